"""The training rows of a run: Skill-Mix datasets (local folders or Hub repos pinned to a revision), the
configs to mix, a seeded subsample per config, and optional plain text mixed in at a ratio.

``method: sft`` trains on the conversations of the k configs; ``method: dpo`` on the pairs of the
``preference`` config (prompt, chosen, rejected) and on nothing else. Every problem a recipe can cause (a
folder that is not a dataset, a missing config, a config of the other method, a Hub repo without a
revision or with one that does not exist, a subsample larger than its config) is a :class:`ConfigError`
raised here, before any model is loaded and before the output folder is touched.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.dataset_folder.layout import DatasetFolder, drawn_keys, is_drawn, read_dataset_folder
from skillmix.training.config import DataConfig, DatasetSource, PlainText

ROLES = ["user", "assistant", "user", "assistant"]
PREFERENCE = "preference"  # the config of preference pairs, the one config ``method: dpo`` trains on
CONTINUATION = ["assistant", "user", "assistant"]  # the roles of a pair's chosen and rejected messages


@dataclass
class LoadedSource:
    """One dataset of the recipe: its manifest and its kept rows by config (after subsampling)."""

    source: DatasetSource
    manifest: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    index: int = 0  # its place in the recipe's data.datasets, for error messages
    _drawn: frozenset[Any] | None = field(default=None, repr=False)

    @property
    def drawn(self) -> frozenset[Any]:
        """Every combination the dataset drew (``DatasetFolder.drawn_keys``), read when first asked: the
        evaluation's train and all sets, which the leakage check rebuilds, are drawn from the others."""
        if self._drawn is None:
            where = f"data.datasets[{self.index}] ({self.source.path})"
            if not self.is_hub:
                with _recipe_key(self.index):
                    self._drawn = read_dataset_folder(self.source.path).drawn_keys()
            else:
                names = sorted(self.manifest.get("release", {}).get("configs") or self.manifest["configs"])
                rows = (_hub_rows(self.source, name, where) for name in names if is_drawn(name))
                self._drawn = drawn_keys(rows)
        return self._drawn

    @property
    def is_hub(self) -> bool:
        return not Path(self.source.path).exists()

    def describe(self) -> dict[str, Any]:
        """For the model card: where the data came from and how much of each config was used."""
        return {
            "path": self.source.path,
            "revision": self.source.revision,
            "hub": self.is_hub,
            "configs": {name: len(rows) for name, rows in self.rows.items()},
            "split_hash": self.manifest.get("split", {}).get("hash"),
        }


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """No progress bars while the (small) datasets load: a bad recipe prints its one error line only."""
    import datasets
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hub_was_on, datasets_was_on = not are_progress_bars_disabled(), datasets.is_progress_bar_enabled()
    disable_progress_bars()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hub_was_on:
            enable_progress_bars()
        if datasets_was_on:
            datasets.enable_progress_bars()


def load_sources(config: DataConfig, method: str = "sft") -> list[LoadedSource]:
    """Every dataset of the recipe with the rows of its chosen configs, which must suit ``method``."""
    for index, source in enumerate(config.datasets):
        _check_method(source, method, f"data.datasets[{index}] ({source.path})")
    with quiet_downloads():
        return [_load_source(index, source, config.seed) for index, source in enumerate(config.datasets)]


def _check_method(source: DatasetSource, method: str, where: str) -> None:
    """``method: dpo`` trains on the ``preference`` config only; every other method never on it."""
    others = [name for name in source.configs if name != PREFERENCE]
    if method == "dpo" and others:
        raise ConfigError(
            f"{where}: method dpo trains on preference pairs only; set configs: [{PREFERENCE}] "
            f"(not {', '.join(others)})"
        )
    if method != "dpo" and PREFERENCE in source.configs:
        raise ConfigError(f"{where}: the {PREFERENCE} config holds pairs for method dpo, not {method}")


def _load_source(index: int, source: DatasetSource, seed: int) -> LoadedSource:
    where = f"data.datasets[{index}] ({source.path})"
    local = _local_folder(source, index) if Path(source.path).exists() else None
    if local is not None:
        manifest, available = local.manifest, set(local.names)
    else:
        manifest, available = _hub_manifest(source, where)
    item = LoadedSource(source, manifest, index=index)
    for name in source.subsample:
        if name not in source.configs:
            raise ConfigError(f"{where}: subsample names {name!r}, which is not in configs")
    for name in source.configs:
        if name not in available:
            have = ", ".join(sorted(c for c in available if c.startswith("k") or c == PREFERENCE)) or "none"
            raise ConfigError(f"{where}: no config {name!r} (it has {have})")
        rows = _local_rows(local, name, index) if local is not None else _hub_rows(source, name, where)
        rows = _subsample(rows, source, name, seed, where)
        if name == PREFERENCE and not rows:
            raise ConfigError(f"{where}: config {PREFERENCE!r} has no pairs")
        check = _checked_pair if name == PREFERENCE else _checked
        item.rows[name] = [check(row, where) for row in rows]
    return item


@contextlib.contextmanager
def _recipe_key(index: int) -> Iterator[None]:
    """A dataset folder's error, prefixed with the recipe key that named the folder."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(f"data.datasets[{index}]: {exc}") from None


def _local_folder(source: DatasetSource, index: int) -> DatasetFolder:
    with _recipe_key(index):
        return read_dataset_folder(source.path)


def _local_rows(folder: DatasetFolder, name: str, index: int) -> list[dict[str, Any]]:
    with _recipe_key(index):
        return folder.rows(name)


def _hub_manifest(source: DatasetSource, where: str) -> tuple[dict[str, Any], set[str]]:
    """The release's manifest at the pinned revision; the configs of that release."""
    if "/" not in source.path or source.path.count("/") != 1:
        raise ConfigError(f"{where}: no such folder, and not a Hub repo id (org/name)")
    if not source.revision:
        raise ConfigError(
            f"{where}: no such folder; a Hub dataset must be pinned: set revision (tag or commit)"
        )
    path = hub_file(source.path, "manifest.json", source.revision, where, repo_type="dataset")
    manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    release = manifest.get("release", {}).get("configs")
    return manifest, set(release or manifest.get("configs", {}))


def hub_file(
    repo_id: str, filename: str, revision: str | None, where: str, repo_type: str = "dataset"
) -> str:
    """Download one file of a Hub repo; not found, bad revision or no answer is a :class:`ConfigError`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision)
    except RevisionNotFoundError:
        raise ConfigError(f"{where}: the Hub repo {repo_id} has no revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ConfigError(f"{where}: no Hub {repo_type} repo {repo_id} (or no access to it)") from None
    except EntryNotFoundError:
        raise ConfigError(
            f"{where}: {repo_id}@{revision} has no {filename}; not a skillmix release"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        raise ConfigError(f"{where}: cannot reach {repo_id} on the Hub: {str(exc).splitlines()[0]}") from None


def _hub_rows(source: DatasetSource, name: str, where: str) -> list[dict[str, Any]]:
    from datasets import load_dataset

    try:
        data = load_dataset(source.path, name, split="train", revision=source.revision)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"{where}: cannot load config {name}: {str(exc).splitlines()[0]}") from None
    return data.to_list()


def _subsample(rows: list[dict[str, Any]], source: DatasetSource, name: str, seed: int, where: str) -> list:
    size = source.subsample.get(name)
    if size is None:
        return rows
    if size > len(rows):
        raise ConfigError(f"{where}: subsample of {name} asks for {size} rows; the config has {len(rows)}")
    return random.Random(f"{seed}:{source.path}:{name}").sample(rows, size)


def _checked(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A kept row whose conversation is user, assistant, user, assistant, with text in every turn."""
    conversation = row.get("conversation") or []
    roles = [message.get("role") for message in conversation]
    if roles != ROLES or not all((message.get("content") or "").strip() for message in conversation):
        raise ConfigError(f"{where}: row {row.get('id')} is not a two-round conversation (roles {roles})")
    return row


def _checked_pair(row: dict[str, Any], where: str) -> dict[str, Any]:
    """A kept pair: a prompt ending with the user's request, chosen and rejected continuing it as assistant,
    user, assistant, with text in every turn."""
    prompt = row.get("prompt") or []
    sides = {side: row.get(side) or [] for side in ("chosen", "rejected")}
    messages = [*prompt, *sides["chosen"], *sides["rejected"]]
    shaped = bool(prompt) and prompt[-1].get("role") == "user"
    shaped &= all([m.get("role") for m in side] == CONTINUATION for side in sides.values())
    if not shaped or not all((m.get("content") or "").strip() for m in messages):
        roles = {side: [m.get("role") for m in value] for side, value in sides.items()}
        raise ConfigError(f"{where}: row {row.get('id')} is not a two-round preference pair (roles {roles})")
    return row


def pairs(sources: list[LoadedSource]) -> list[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    """``(pair id, prompt + chosen, prompt + rejected)`` of every preference row, in a stable order."""
    out = []
    for item in sources:
        for row in item.rows.get(PREFERENCE, []):
            prompt = _messages(row["prompt"])
            out.append(
                (str(row["id"]), prompt + _messages(row["chosen"]), prompt + _messages(row["rejected"]))
            )
    return out


def _messages(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in turns]


def conversations(sources: list[LoadedSource]) -> list[tuple[str, list[dict[str, str]]]]:
    """``(row id, messages)`` of every training row, in a stable order."""
    out = []
    for item in sources:
        for rows in item.rows.values():
            for row in rows:
                out.append((str(row["id"]), _messages(row["conversation"])))
    return out


SHUFFLE_BUFFER = 10_000  # texts held at once while the plain-text stream is shuffled


def load_plain_text(spec: PlainText, count: int, seed: int, log: Callable[[str], None]) -> list[str]:
    """``count`` texts drawn (seeded) from the plain-text dataset; fewer when it has fewer.

    The corpus is **streamed** (``datasets`` streaming): a pre-training corpus of billions of tokens is
    never downloaded or held whole; the draw is a seeded shuffle of the stream through a buffer of
    :data:`SHUFFLE_BUFFER` texts, then the first ``count`` non-empty texts of it, so only what is kept is
    read past the buffer."""
    stream = _load_text_dataset(spec).shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    texts: list[str] = []
    try:
        for row in stream:
            if len(texts) >= count:
                break
            if spec.text_field not in row:
                raise ConfigError(
                    f"data.plain_text: {spec.path} has no column {spec.text_field!r} ({list(row)})"
                )
            text = row[spec.text_field]
            if isinstance(text, str) and text.strip():
                texts.append(text)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:  # a stream fails as it is read
        raise ConfigError(f"data.plain_text: cannot read {spec.path}: {str(exc).splitlines()[0]}") from None
    if len(texts) < count:
        log(f"plain text: {spec.path} has {len(texts)} texts, fewer than the {count} the ratio asks for")
    return texts


def _load_text_dataset(spec: PlainText) -> Any:
    from datasets import load_dataset

    formats = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".txt": "text", ".csv": "csv"}
    path = Path(spec.path)
    if not path.exists() and not spec.revision:
        raise ConfigError(
            f"data.plain_text: {spec.path} is not a local file; pin the Hub dataset with revision"
        )
    try:
        if path.is_file():
            if path.suffix not in formats:
                raise ConfigError(f"data.plain_text: {spec.path}: use one of {', '.join(formats)}")
            return load_dataset(formats[path.suffix], data_files=str(path), split=spec.split, streaming=True)
        return load_dataset(spec.path, spec.name, split=spec.split, revision=spec.revision, streaming=True)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise ConfigError(f"data.plain_text: cannot load {spec.path}: {str(exc).splitlines()[0]}") from None
