"""A dataset folder made by ``skillmix dataset``, read for review: its manifest and the rows of each config.

A folder is recognised by its ``manifest.json`` (a JSON object with ``skillmix_manifest``, ``config``,
``models`` and ``configs``) and the Parquet file of every config it lists; anything else is a
:class:`~skillmix.review.connect.ReviewError` naming the folder and what is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.review.connect import ReviewError

K_CONFIG = re.compile(r"k(\d+)")
REQUIRED_KEYS = ("skillmix_manifest", "config", "models", "configs")


@dataclass
class DatasetFolder:
    path: Path
    manifest: dict[str, Any]
    configs: dict[str, list[dict[str, Any]]]

    @property
    def judge(self) -> str:
        """The judge's identity: the model name of ``manifest.models.judge``."""
        judge = self.manifest["models"].get("judge") or {}
        return str(judge.get("model") or "judge")

    def graded(self) -> list[dict[str, Any]]:
        """The rows a review may sample: the kept rows of the k configs and the rejected rows."""
        names = [name for name in self.configs if K_CONFIG.fullmatch(name)] + ["rejected"]
        return [row for name in names for row in self.configs.get(name, [])]

    def config_of(self) -> dict[str, str]:
        """``{row id: config name}`` for every row of the folder."""
        return {str(row["id"]): name for name, rows in self.configs.items() for row in rows}

    def catalog(self) -> Any:
        """The catalog the folder was built with (``config.catalog``, ``config.topics``)."""
        from skillmix.catalog import CatalogError, load_catalog

        build = self.manifest["config"]
        try:
            return load_catalog(build.get("catalog", "builtin"), topics=build.get("topics"))
        except CatalogError as exc:
            raise ReviewError(f"{self.path}: the catalog it was built with does not load: {exc}") from None


def read_dataset_folder(path: str | Path) -> DatasetFolder:
    """The manifest and rows of the dataset folder ``path`` (see the module docstring)."""
    import pyarrow.parquet as pq

    folder = Path(path)
    manifest = _manifest(folder)
    configs: dict[str, list[dict[str, Any]]] = {}
    for name, info in manifest["configs"].items():
        file = folder / str((info or {}).get("path", ""))
        if not file.is_file():
            raise ReviewError(f"{folder}: config {name} is listed in manifest.json but {file} is missing")
        try:
            configs[name] = pq.read_table(file).to_pylist()
        except (OSError, ValueError) as exc:
            raise ReviewError(f"{file} does not load ({str(exc).splitlines()[0]})") from None
    return DatasetFolder(folder, manifest, configs)


def _manifest(folder: Path) -> dict[str, Any]:
    hint = "a folder made by `skillmix dataset` (make dataset)"
    if not folder.is_dir():
        raise ReviewError(f"{folder} is not a skillmix dataset folder (no such folder); give {hint}")
    path = folder / "manifest.json"
    if not path.is_file():
        raise ReviewError(f"{folder} is not a skillmix dataset folder (no manifest.json); give {hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReviewError(f"{path} does not parse ({str(exc).splitlines()[0]})") from None
    missing = [key for key in REQUIRED_KEYS if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise ReviewError(f"{folder} is not a skillmix dataset folder (manifest.json has no {missing[0]})")
    return manifest
