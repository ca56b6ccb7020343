"""The output folder of a build, in Hugging Face layout: taken by one run, replaced whole or not at all.

::

    OUT/
      README.md                         card with the `configs:` that `load_dataset(OUT, "k3")` reads
      manifest.json                     config, seeds, split hashes, versions, counts, tokens, cost, time
      k3/train-00000-of-00001.parquet   kept (full-mark) rows, one config per k
      surplus/, rejected/, failed/      rows kept beyond a target, graded rows that missed a point, failures
      .skillmix/                        run state: request cache, lock, distilabel scratch, server log

* **One run per folder**: a run holds an OS lock on ``.skillmix/lock`` (``flock``: it dies with the
  process, so a killed run leaves no stale lock); a second run into the folder is refused at once.
* **Broken state is named**: a cache that is not a database, a manifest or run record that does not
  parse, a listed Parquet file that does not load: a :class:`ConfigError` naming the file, before any
  request. Nothing of the user's is deleted by us.
* **Replaced whole**: the new configs, card and manifest are written to ``.skillmix/staging``; only when
  they are complete (the run's invariant holds) are they swapped in by renames, the previous items moved
  to ``.skillmix/previous`` first and removed last. A swap that fails is rolled back; one cut short by a
  crash is finished by the next run (its plan is in ``.skillmix/swap.json``, written before the swap).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

from skillmix.pipelines.config import ConfigError, DatasetConfig
from skillmix.pipelines.output import CACHE_FILE, RunFailed, RunResult, build_manifest
from skillmix.prompts import PromptSet

RUN_FILE = "run.json"
LOCK_FILE = "lock"
SWAP_FILE = "swap.json"
DATA_FILE = "train-00000-of-00001.parquet"
CONFIG_NAMES = ("surplus", "rejected", "failed")


class OutputFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.work = path / ".skillmix"
        self._lock: Any = None

    def claim(self, config: DatasetConfig) -> None:
        """Take the folder for this run: new, empty, or holding this same run (then resume)."""
        run_file = self.work / RUN_FILE
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output {self.path} exists and is not a folder")
        if not run_file.is_file() and self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(f"output folder {self.path} is not empty and holds no skillmix run")
        self.work.mkdir(parents=True, exist_ok=True)
        self.lock()
        if run_file.is_file() and _read_json(run_file).get("fingerprint") != config.fingerprint():
            raise ConfigError(
                f"output folder {self.path} holds another run's data (different settings); "
                "choose another OUT= / --out or remove it"
            )
        self.finish_swap()
        self.check_state()
        _write_atomic(run_file, {"fingerprint": config.fingerprint(), "config": config.to_dict()})

    def lock(self) -> None:
        """Hold the folder's lock for as long as this process lives, or refuse naming who holds it."""
        handle = open(self.work / LOCK_FILE, "a+")  # noqa: SIM115 - held until the process ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise ConfigError(
                f"output folder {self.path} is in use by another skillmix run (process {holder}); "
                "wait for it to end, or choose another --out"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock = handle

    def check_state(self) -> None:
        """Name any file of the folder's state that cannot be read, before anything is sent."""
        cache = self.work / CACHE_FILE
        if cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
                    db.execute("SELECT name FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"{cache} is not a readable request cache ({exc}); move it aside to start afresh "
                    "(nothing is deleted by skillmix), or restore it from a copy"
                ) from None
        manifest = self.path / "manifest.json"
        if manifest.exists():
            for name, info in _read_json(manifest).get("configs", {}).items():
                _check_parquet(self.path / info.get("path", f"{name}/{DATA_FILE}"))

    def write(self, result: RunResult) -> None:
        """Write the new output beside the old and swap it in whole (see the module docstring)."""
        result.check_complete()
        try:
            self.swap(self._stage(result))
        except OSError as exc:
            raise RunFailed(
                f"could not put the new output into {self.path} ({exc}); the previous output was left as it "
                "was and nothing paid is lost: run the same command again"
            ) from None

    def _stage(self, result: RunResult) -> list[str]:
        """The new configs, manifest and card in ``.skillmix/staging``; returns the names written."""
        from skillmix.pipelines.rows import to_records

        staging = self.work / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        prompts = PromptSet(result.config.template_dir)
        written = write_configs(staging, _configs(result, to_records(result, prompts)))
        write_manifest_and_card(staging, build_manifest(result, prompts, written))
        return ["README.md", "manifest.json", *written]

    def swap(self, names: list[str]) -> None:
        """Replace the folder's items by the staged ``names``: old items out, new in, old removed."""
        old = [p.name for p in self.path.iterdir() if _managed(p.name)]
        _write_atomic(self.work / SWAP_FILE, {"new": names, "old": old})
        previous = self.work / "previous"
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        moves: list[tuple[Path, Path]] = []
        try:
            for name in old:
                moves.append(_move(self.path / name, previous / name))
            for name in names:
                moves.append(_move(self.work / "staging" / name, self.path / name))
        except BaseException:
            for source, target in reversed(moves):  # roll back: the previous output, as it was
                os.replace(target, source)
            (self.work / SWAP_FILE).unlink(missing_ok=True)
            raise
        self._end_swap()

    def finish_swap(self) -> None:
        """A swap cut short by a crash: move what was not moved yet (the staged output is complete)."""
        journal = self.work / SWAP_FILE
        if not journal.exists():
            return
        plan = _read_json(journal)
        previous = self.work / "previous"
        previous.mkdir(exist_ok=True)
        staged = {name for name in plan.get("new", []) if (self.work / "staging" / name).exists()}
        for name in plan.get("old", []):  # still in place, and not a new item already swapped in
            if (self.path / name).exists() and (name in staged or name not in plan.get("new", [])):
                _move(self.path / name, previous / name)
        for name in staged:
            _move(self.work / "staging" / name, self.path / name)
        self._end_swap()

    def _end_swap(self) -> None:
        (self.work / SWAP_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.work / "previous", ignore_errors=True)
        shutil.rmtree(self.work / "staging", ignore_errors=True)


def write_configs(folder: Path, configs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One Parquet file per config with rows (datasets cannot load a zero-row file: empty ones are left
    out); returns the manifest's ``configs`` entry."""
    from skillmix.pipelines.rows import write_parquet

    written = {}
    for name, rows in configs.items():
        if rows:
            write_parquet(rows, folder / name / DATA_FILE)
            written[name] = {"path": f"{name}/{DATA_FILE}", "rows": len(rows)}
    return written


def write_manifest_and_card(folder: Path, manifest: dict[str, Any]) -> None:
    from skillmix.pipelines.card import render_folder_card

    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (folder / "README.md").write_text(render_folder_card(manifest))


def _configs(result: RunResult, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    surplus = result.surplus_ids()
    configs = {
        f"k{k}": [r for r in records if r["k"] == k and r["outcome"] == "kept" and r["id"] not in surplus]
        for k in result.config.k
    }
    configs["surplus"] = [r for r in records if r["id"] in surplus]
    configs["rejected"] = [r for r in records if r["outcome"] == "rejected"]
    configs["failed"] = [r for r in records if r["outcome"] == "failed"]
    return configs


def _managed(name: str) -> bool:
    """The folder's items that a build writes (the user's other files are never touched)."""
    is_k = name.startswith("k") and name[1:].isdigit()
    return name in ("README.md", "manifest.json", *CONFIG_NAMES) or is_k


def _move(source: Path, target: Path) -> tuple[Path, Path]:
    os.replace(source, target)
    return source, target


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path} does not parse ({str(exc).splitlines()[0]}); move it aside or restore it from a copy "
            "(nothing is deleted by skillmix)"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object; move it aside or restore it from a copy")
    return data


def _check_parquet(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is listed in the folder's manifest but does not load ({str(exc).splitlines()[0]}); "
            "move the folder aside or restore it from a copy (nothing is deleted by skillmix)"
        ) from None


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(temporary, path)
