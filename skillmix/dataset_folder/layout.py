"""What a dataset folder is: the names of its layout, and the one reader that everything uses.

Every module that writes or reads a dataset folder (the build, the reviewed folder, the release, the
training, the evaluation's run state) takes its names from here, so the layout is stated once: one Parquet
file per config (``<config>/train-00000-of-00001.parquet``, the ``train`` split that
``load_dataset(OUT, "k3")`` reads), ``manifest.json`` listing them, ``README.md`` (the card) and the run
state in ``.skillmix/``. The configs are ``k1``, ``k2``, ... (the kept rows of each k, :data:`K_CONFIG`) and
:data:`CONFIG_NAMES` (``surplus``, ``rejected``, ``failed``). :func:`failures_by_reason` counts the failed
rows the same way for the build's manifest and the release's statistics.

A folder is recognised by its ``manifest.json`` (a JSON object with ``skillmix_manifest``, ``config``,
``models`` and ``configs``) and the Parquet file of every config it lists. :func:`read_dataset_folder`
reads and checks the manifest only; the rows of a config are read when first asked for
(:meth:`DatasetFolder.rows`), so a training run that mixes two configs reads two files, and a release or a
review that needs them all reads each once (:attr:`DatasetFolder.configs`). The writer
(:mod:`skillmix.dataset_folder.writer`) checks a folder's state through the same functions before a run
touches it.

Anything wrong is one :class:`~skillmix.config.ConfigError` naming the file and what to do (the command
line prints it as its one ``skillmix: error:`` line): no such folder, no manifest, a manifest or run
record that does not parse or is not a skillmix manifest, a listed file that is missing or does not load.
Nothing of the folder is ever changed here, and nothing heavier than ``json`` is imported before a file
is read (the command line imports this module for every command).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError

DATA_FILE = "train-00000-of-00001.parquet"  # the one file of every data config (split train)
MANIFEST_FILE = "manifest.json"
CARD_FILE = "README.md"
K_CONFIG = re.compile(r"k(\d+)")  # the kept rows of one k
CONFIG_NAMES = ("surplus", "rejected", "failed", "preference")  # besides the k ones, in the order written
GENERATION = ":g"  # a row of one of several generations: <combination>:g<i>

WORK_DIR = ".skillmix"  # the run state, never part of the dataset
RUN_FILE = "run.json"  # the record of the run the folder holds: {kind, fingerprint, config}
EVAL_RECORD_FILE = "eval.json"  # an evaluation's record in earlier versions: {fingerprint}
LOCK_FILE = "lock"
SWAP_FILE = "swap.json"  # the plan of a swap in progress
STAGING_DIR = "staging"  # the new output, written whole before the swap
PREVIOUS_DIR = "previous"  # the old output during a swap, removed last
CACHE_FILE = "cache.sqlite"  # every completed request of the run, by the hash of the request


def config_path(name: str) -> str:
    """The path of a config's Parquet file, relative to the folder (as the manifest lists it)."""
    return f"{name}/{DATA_FILE}"


def k_configs(names: Iterable[str]) -> list[str]:
    """The k configs among ``names``, by k: ``k1``, ``k2``, ..."""
    return sorted((name for name in names if K_CONFIG.fullmatch(name)), key=lambda name: int(name[1:]))


def is_managed(name: str) -> bool:
    """An item of the folder that a build writes (the user's other files are never touched)."""
    return name in (CARD_FILE, MANIFEST_FILE, *CONFIG_NAMES) or K_CONFIG.fullmatch(name) is not None


def combination_of(row: Mapping[str, Any]) -> str:
    """The combination a row asks about: its id, less ``:g<i>`` when it is one of several generations."""
    head, _, tail = str(row["id"]).rpartition(GENERATION)
    return head if head and tail.isdigit() else str(row["id"])


def generation_of(row: Mapping[str, Any]) -> int:
    """The generation index of a row (0 for a row that is its combination)."""
    head, _, tail = str(row["id"]).rpartition(GENERATION)
    return int(tail) if head and tail.isdigit() else 0


def failures_by_reason(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Failed rows by ``"status: stage"``: the status and the part of ``failure_reason`` before ":"."""
    counts: Counter[str] = Counter()
    for row in rows:
        status = row.get("status") or "unknown"
        stage = str(row.get("failure_reason") or "").split(":")[0].strip()
        counts[f"{status}: {stage}" if stage else status] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


REQUIRED_KEYS = ("skillmix_manifest", "config", "models", "configs")
_HINT = "make one with `skillmix dataset` (make dataset)"
_KEEP = "move it aside or restore it from a copy (nothing is deleted by skillmix)"


@dataclass
class DatasetFolder:
    """The manifest of a dataset folder, and the rows of its configs as they are asked for."""

    path: Path
    manifest: dict[str, Any]
    _rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        """The configs the manifest lists, in its order."""
        return list(self.manifest["configs"])

    def file(self, name: str) -> Path:
        """The Parquet file of the config ``name``; one not listed, or whose file is missing, is named."""
        if name not in self.manifest["configs"]:
            raise ConfigError(
                f"{self.path} has no config {name!r} (it has {', '.join(self.names) or 'none'})"
            )
        relative = str((self.manifest["configs"][name] or {}).get("path") or config_path(name))
        if not (self.path / relative).is_file():
            raise ConfigError(
                f"{self.path}: config {name} is listed in {MANIFEST_FILE} but {relative} is missing"
            )
        return self.path / relative

    def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of the listed config ``name`` (read once)."""
        if name not in self._rows:
            self._rows[name] = _read_table(self.file(name)).to_pylist()
        return self._rows[name]

    @property
    def configs(self) -> dict[str, list[dict[str, Any]]]:
        """``{config: rows}`` for every listed config."""
        return {name: self.rows(name) for name in self.names}

    def check_files(self) -> None:
        """Every listed file is there and its Parquet metadata loads (no rows are read)."""
        import pyarrow.parquet as pq

        for name in self.names:
            _loading(self.file(name), pq.read_metadata)

    def graded(self) -> list[dict[str, Any]]:
        """The graded rows: the kept rows of the k configs (in the manifest's order), then the rejected."""
        names = [name for name in self.names if K_CONFIG.fullmatch(name) or name == "rejected"]
        return [row for name in sorted(names, key=lambda name: name == "rejected") for row in self.rows(name)]

    def drawn_keys(self) -> frozenset[Any]:
        """The combinations the dataset drew, every round: every row of its k configs, ``surplus``,
        ``rejected`` and ``failed`` (each drawn row ends in one of them), as ``combination_key``s. An
        evaluation in the train or all setting is drawn from the others (:mod:`skillmix.release.evalsets`)."""
        return drawn_keys(self.rows(name) for name in self.names if is_drawn(name))

    @property
    def judge(self) -> str:
        """The judge's identity: the model name of ``manifest.models.judge``."""
        judge = self.manifest["models"].get("judge") or {}
        return str(judge.get("model") or "judge")

    def catalog(self) -> Any:
        """The catalog the folder was built with (``config.catalog``, ``config.topics``)."""
        from skillmix.catalog import CatalogError, load_catalog

        build = self.manifest["config"]
        try:
            return load_catalog(build.get("catalog", "builtin"), topics=build.get("topics"))
        except CatalogError as exc:
            raise ConfigError(f"{self.path}: the catalog it was built with does not load: {exc}") from None


DRAWN_CONFIGS = ("surplus", "rejected", "failed")  # beside the k configs: where the other drawn rows end


def is_drawn(name: str) -> bool:
    """Whether the config ``name`` holds rows the dataset drew (not ``all``, a union, nor ``preference``)."""
    return bool(K_CONFIG.fullmatch(name)) or name in DRAWN_CONFIGS


def drawn_keys(configs: Iterable[Iterable[Mapping[str, Any]]]) -> frozenset[Any]:
    """The ``combination_key`` of every row of ``configs`` (the drawn ones: :func:`is_drawn`)."""
    from skillmix.sampling import combination_key

    return frozenset(combination_key(row["skills"], row["topic"]) for rows in configs for row in rows)


def read_dataset_folder(path: str | Path) -> DatasetFolder:
    """The dataset folder ``path``, its manifest checked (see the module docstring)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a skillmix dataset folder (no such folder); {_HINT}")
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ConfigError(f"{folder} is not a skillmix dataset folder (no {MANIFEST_FILE}); {_HINT}")
    manifest = read_json(manifest_path)
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        raise ConfigError(f"{folder} is not a skillmix dataset folder ({MANIFEST_FILE} has no {missing[0]})")
    if not isinstance(manifest["configs"], dict):
        raise ConfigError(f"{manifest_path}: configs is not a mapping of config names; {_KEEP}")
    return DatasetFolder(folder, manifest)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object of a folder (its manifest, a run record); one that does not parse is named."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path} does not parse ({str(exc).splitlines()[0]}); {_KEEP}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object; move it aside or restore it from a copy")
    return data


def _read_table(path: Path) -> Any:
    import pyarrow.parquet as pq

    return _loading(path, pq.read_table)


def _loading(path: Path, load: Any) -> Any:
    try:
        return load(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is listed in the folder's manifest but does not load ({str(exc).splitlines()[0]}); "
            "move the folder aside or restore it from a copy (nothing is deleted by skillmix)"
        ) from None
