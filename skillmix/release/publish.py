"""Versioned Hub releases of a dataset folder made by ``skillmix dataset``, and downloading them.

``publish`` pushes, in **one commit**, a release folder with

* one config per k (``k1``, ``k2``, ...) and ``all``, each with its ``train`` split; ``rejected`` and
  ``failed`` (left out when empty: ``datasets`` cannot load a zero-row Parquet file);
* the evaluation prompt sets ``eval-train``, ``eval-held-out``, ``eval-all`` (k = 2..5, split ``test``);
* ``manifest.json`` (the build manifest plus the release: version, statistics, audit, changelog),
  ``README.md`` (the card) and ``figures/*.png``;

then tags the commit with the version. The tag is created only after the commit succeeded, so a push
broken off midway never leaves a half release under a version name. A version whose tag exists is refused
unless ``force``. The leakage audit runs before anything is sent, and a failed check stops the release.
The token comes from ``HF_TOKEN`` or the Hub login only; it is never printed, logged or written, and
every file is checked not to contain it before the push.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skillmix.catalog import Catalog
from skillmix.dataset_folder.layout import DatasetFolder, k_configs, read_dataset_folder
from skillmix.dataset_folder.schema import write_configs
from skillmix.release.audit import AuditReport, audit
from skillmix.release.card import changelog, render_release_card
from skillmix.release.evalsets import build_eval_sets, exclusion_record
from skillmix.release.figures import make_figures
from skillmix.release.stats import dataset_stats
from skillmix.release.versions import parse_version, previous_release
from skillmix.sampling import SamplingError

EVAL_SETS_TEST_FILE = "test-00000-of-00001.parquet"  # the one file of each eval-<setting> config (split test)


class PublishError(ValueError):
    """The release cannot be made; the message says why (never containing the token)."""


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    version: str
    commit: str
    configs: dict[str, int]
    previous: str | None
    url: str


def _publishable(data: Path) -> DatasetFolder:
    """The ``skillmix dataset`` folder ``data``, with kept rows to publish."""
    folder = read_dataset_folder(data)
    if not k_configs(folder.names):
        raise PublishError(f"{data} has no kept rows: nothing to publish")
    return folder


def resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    return token


def publish(
    data: str | Path,
    repo_id: str,
    version: str,
    private: bool = False,
    force: bool = False,
    eval_n: int = 100,
    token: str | None = None,
    log: Callable[[str], None] = print,
) -> PublishResult:
    """Release the folder ``data`` as ``version`` of the Hub dataset ``repo_id``; see the module docstring."""
    from huggingface_hub import HfApi

    parse_version(version)
    folder = _publishable(Path(data))
    manifest, configs = folder.manifest, folder.configs
    token = resolve_token(token)
    api = HfApi(token=token)
    catalog, eval_sets, report = _audit(folder, eval_n)
    tags = _existing_tags(api, repo_id)
    if version in tags and not force:
        raise PublishError(f"{repo_id} already has a release {version}; use --force to replace it")
    previous = previous_release(tags, version)
    previous_manifest, previous_ids = _previous(repo_id, previous, token) if previous else (None, {})

    with tempfile.TemporaryDirectory(prefix="skillmix-release-") as tmp:
        staging = Path(tmp)
        written = _write_configs(staging, configs, eval_sets)
        stats = dataset_stats(configs, [s.name for s in catalog.skills], list(catalog.topics))
        release = {
            "repo_id": repo_id,
            "version": version,
            "previous_version": previous,
            "configs": written,
            "eval_n_per_k": eval_n,
            "eval_excluded": exclusion_record(folder.drawn_keys()),
            "audit": report.to_dict(),
            "stats": stats,
            "figures": make_figures(stats, staging),
            "changelog": changelog(previous_manifest, previous_ids, manifest, stats, configs),
        }
        _write_card(staging, {**manifest, "release": release}, token)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        log(f"Pushing {len(written)} configs to {repo_id} ...")
        commit = api.upload_folder(
            folder_path=str(staging),
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=f"Release {version}",
            delete_patterns=["*.parquet", "*.png"],
        )
    _tag(api, repo_id, version, commit.oid, replace=version in tags)
    log(f"Released {repo_id} {version} (commit {commit.oid[:10]})")
    configs_rows = {name: info["rows"] for name, info in written.items()}
    return PublishResult(repo_id, version, commit.oid, configs_rows, previous, commit.repo_url)


def _audit(
    folder: DatasetFolder, eval_n: int
) -> tuple[Catalog, dict[str, list[dict[str, Any]]], AuditReport]:
    """The catalog, the evaluation sets and the leakage audit; a failed check stops the release here."""
    manifest, catalog = folder.manifest, folder.catalog()
    split = catalog.split(manifest["config"]["split_seed"])
    if split.hash != manifest["split"]["hash"]:
        raise PublishError("the catalog no longer gives the split this dataset was built with (hash differs)")
    try:  # the train and all sets from the combinations the dataset did not draw (every round)
        eval_sets = build_eval_sets(
            catalog, split, n=eval_n, seed=manifest["seeds"]["sampling"], exclude=folder.drawn_keys()
        )
    except SamplingError as exc:
        raise PublishError(f"the evaluation sets cannot be drawn: {exc}") from None
    training = [row for name in k_configs(folder.names) for row in folder.rows(name)]
    report = audit(training, [r for rows in eval_sets.values() for r in rows], split)
    if not report.passed:
        raise PublishError(f"leakage audit failed, nothing was pushed: {report.failures()}")
    return catalog, eval_sets, report


def _existing_tags(api: Any, repo_id: str) -> dict[str, str]:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(repo_id, repo_type="dataset")
    except RepositoryNotFoundError:
        return {}
    return {tag.name: tag.target_commit for tag in refs.tags}


def _write_card(staging: Path, manifest: dict[str, Any], token: str) -> None:
    """The release manifest and card; then every staged file is checked not to contain the token."""
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (staging / "README.md").write_text(render_release_card(manifest))
    _refuse_token_in(staging, token)


def _tag(api: Any, repo_id: str, version: str, oid: str, replace: bool) -> None:
    """Tag the release commit (only ever after the commit succeeded)."""
    if replace:
        api.delete_tag(repo_id, tag=version, repo_type="dataset")
    api.create_tag(repo_id, tag=version, revision=oid, repo_type="dataset", tag_message=f"skillmix {version}")


def _previous(repo_id: str, version: str, token: str) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """The manifest of an earlier release and the row ids of each of its data configs."""
    from huggingface_hub import hf_hub_download

    def fetch(filename: str) -> Path:
        return Path(hf_hub_download(repo_id, filename, repo_type="dataset", revision=version, token=token))

    manifest = json.loads(fetch("manifest.json").read_text())
    ids = {}
    for name, info in manifest.get("release", {}).get("configs", {}).items():
        if not name.startswith("eval-"):
            ids[name] = set(pq.read_table(fetch(info["path"]), columns=["id"]).column("id").to_pylist())
    return manifest, ids


def _write_configs(
    staging: Path, configs: dict[str, list[dict[str, Any]]], eval_sets: dict[str, list[dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """The release's configs: each k, ``all`` (every k), the other data configs (split ``train``, as the
    folder writes them), then the evaluation sets (split ``test``); empty ones are left out."""
    ks = k_configs(configs)
    data = {name: configs[name] for name in ks}
    data["all"] = [row for name in ks for row in configs[name]]
    data.update((name, configs.get(name, [])) for name in ("rejected", "failed", "surplus", "preference"))
    written = {
        name: {"path": info["path"], "split": "train", "rows": info["rows"]}
        for name, info in write_configs(staging, data).items()
    }
    for name, rows in eval_sets.items():
        if rows:
            path = f"{name}/{EVAL_SETS_TEST_FILE}"
            (staging / name).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), staging / path)
            written[name] = {"path": path, "split": "test", "rows": len(rows)}
    return written


def _refuse_token_in(folder: Path, token: str) -> None:
    needle = token.encode()
    for path in folder.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            raise PublishError(f"refusing to push: {path.relative_to(folder)} contains the Hub token")


def download(repo_id: str, version: str, out: str | Path, token: str | None = None) -> Path:
    """Fetch the release ``version`` of ``repo_id`` into the folder ``out``."""
    from huggingface_hub import snapshot_download

    parse_version(version)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise PublishError(f"output folder {out} is not empty")
    path = snapshot_download(repo_id, repo_type="dataset", revision=version, local_dir=str(out), token=token)
    return Path(path)
