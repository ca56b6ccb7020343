"""The output folder of a run, taken by one run and, for a dataset, replaced whole or not at all.

A dataset build (``skillmix dataset``) and an evaluation (``skillmix eval``) both write into a folder
``OUT`` whose run state lives in ``OUT/.skillmix`` (the layout: :mod:`skillmix.dataset_folder`):

* **One run per folder**: :meth:`OutputFolder.claim` takes a folder that is new, empty, or holds the
  same run (same kind, same fingerprint: then it resumes from the request cache). Its record is
  ``.skillmix/run.json`` = ``{kind, fingerprint, config}`` (a record without ``kind`` is a dataset's, from
  earlier versions; an evaluation of earlier versions left ``.skillmix/eval.json``). A folder holding
  anything else is refused, naming what it holds, and left as it was. A run holds an OS lock on
  ``.skillmix/lock`` (``flock``: it dies with the process, so a killed run leaves no stale lock); a second
  run into the folder is refused at once.
* **Broken state is named**: a cache that is not a database, a manifest or run record that does not
  parse, a listed Parquet file that does not load: a :class:`ConfigError` naming the file, before any
  request (:mod:`skillmix.dataset_folder.layout` reads them). Nothing of the user's is deleted by us.
* **Replaced whole**: a build's new configs, card and manifest are written to ``.skillmix/staging``; only
  when they are complete (the run's invariant holds) are they swapped in by renames, the previous items
  moved to ``.skillmix/previous`` first and removed last. A swap that fails is rolled back; one cut short by
  a crash is finished by the next run (its plan is in ``.skillmix/swap.json``, written before the swap).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillmix.config import ConfigError
from skillmix.dataset_folder import layout
from skillmix.dataset_folder.layout import read_dataset_folder, read_json
from skillmix.dataset_folder.preference import preference_pairs
from skillmix.dataset_folder.schema import write_configs
from skillmix.prompts import PromptSet

if TYPE_CHECKING:
    from skillmix.pipelines.output import RunResult


@dataclass(frozen=True)
class _Refusals:
    """What a claim of one kind says when it refuses a folder (``{path}``: the folder, ``{record}``: its run
    record)."""

    foreign: str  # not empty, and no record of a run
    other: str  # a run of this kind with another fingerprint
    unparseable: str | None  # the record does not parse (None: the reader's own message)


KINDS = {
    "dataset": _Refusals(
        "output folder {path} is not empty and holds no skillmix run",
        "output folder {path} holds another run's data (different settings); "
        "choose another OUT= / --out or remove it",
        None,
    ),
    "evaluation": _Refusals(
        "output folder {path} is not empty and holds no skillmix evaluation",
        "output folder {path} holds another evaluation (another student, judge or protocol); "
        "choose another --out or remove it",
        "{record} does not parse; move it aside to start afresh",
    ),
}


class OutputFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.work = path / layout.WORK_DIR
        self._lock: Any = None

    def claim(self, kind: str, fingerprint: str, config: dict[str, Any]) -> None:
        """Take the folder for a run of ``kind`` (``dataset`` or ``evaluation``): new, empty, or holding
        this same run (then resume); refuse anything else, naming it (a refused claim lets the lock go)."""
        if kind not in KINDS:
            raise ValueError(f"a run's kind is one of {', '.join(KINDS)}, not {kind!r}")
        refusals = KINDS[kind]
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output {self.path} exists and is not a folder")
        if not self._record_file() and self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(refusals.foreign.format(path=self.path))
        self.work.mkdir(parents=True, exist_ok=True)
        self.lock()
        try:
            self._check_held(kind, fingerprint, refusals)
            self.finish_swap()
            self.check_state()
        except BaseException:
            self._lock.close()
            self._lock = None
            raise
        record = {"kind": kind, "fingerprint": fingerprint, "config": config}
        _write_atomic(self.work / layout.RUN_FILE, record)

    def _check_held(self, kind: str, fingerprint: str, refusals: _Refusals) -> None:
        """Refuse a folder that holds a run of another kind, or of this kind with another fingerprint."""
        held = self._held(refusals)
        if held is not None and held["kind"] != kind:
            raise ConfigError(
                f"output folder {self.path} holds a skillmix {held['kind']}, not {_a(kind)}; "
                "choose another --out or remove it"
            )
        if held is not None and held.get("fingerprint") != fingerprint:
            raise ConfigError(refusals.other.format(path=self.path))

    def _record_file(self) -> Path | None:
        """The file that records the run the folder holds (this version's, else an earlier evaluation's)."""
        for name in (layout.RUN_FILE, layout.EVAL_RECORD_FILE):
            if (self.work / name).is_file():
                return self.work / name
        return None

    def _held(self, refusals: _Refusals) -> dict[str, Any] | None:
        """The record of the run the folder holds, with its kind; None for a new or empty folder."""
        path = self._record_file()
        if path is None:
            return None
        try:
            record = read_json(path)
        except ConfigError:
            if refusals.unparseable is None:
                raise
            raise ConfigError(refusals.unparseable.format(record=path)) from None
        return {"kind": "evaluation" if path.name == layout.EVAL_RECORD_FILE else "dataset", **record}

    def lock(self) -> None:
        """Hold the folder's lock for as long as this process lives, or refuse naming who holds it."""
        handle = open(self.work / layout.LOCK_FILE, "a+")  # noqa: SIM115 - held until the process ends
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
        cache = self.work / layout.CACHE_FILE
        if cache.exists():
            try:
                with sqlite3.connect(f"file:{cache}?mode=ro", uri=True) as db:
                    db.execute("SELECT name FROM sqlite_master").fetchall()
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"{cache} is not a readable request cache ({exc}); move it aside to start afresh "
                    "(nothing is deleted by skillmix), or restore it from a copy"
                ) from None
        if (self.path / layout.MANIFEST_FILE).exists():
            read_dataset_folder(self.path).check_files()

    def write(self, result: RunResult, paid: bool = True) -> bool:
        """Write a build's new output beside the old and swap it in whole (see the module docstring).

        A run that paid nothing (``paid`` False) and whose data files come out byte for byte as the folder
        holds them changed nothing: the folder is left exactly as it is (its manifest and card too) and
        the answer is False, "already complete".
        """
        from skillmix.pipelines.output import RunFailed

        result.check_complete()
        try:
            names = self._stage(result)
            if not paid and self._unchanged(names):
                shutil.rmtree(self.work / layout.STAGING_DIR, ignore_errors=True)
                return False
            self.swap(names)
            return True
        except OSError as exc:
            raise RunFailed(
                f"could not put the new output into {self.path} ({exc}); the previous output was left as it "
                "was and nothing paid is lost: run the same command again"
            ) from None

    def _stage(self, result: RunResult) -> list[str]:
        """The new configs, manifest and card in ``.skillmix/staging``; returns the names written."""
        from skillmix.pipelines.output import build_manifest
        from skillmix.pipelines.rows import to_records

        staging = self.work / layout.STAGING_DIR
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        prompts = PromptSet(result.config.template_dir)
        written = write_configs(staging, _configs(result, to_records(result, prompts)))
        write_manifest_and_card(staging, build_manifest(result, prompts, written))
        return [layout.CARD_FILE, layout.MANIFEST_FILE, *written]

    def _unchanged(self, names: list[str]) -> bool:
        """Whether the staged data configs are the folder's, the same configs with the same bytes."""
        staging = self.work / layout.STAGING_DIR
        staged = {name for name in names if name not in (layout.CARD_FILE, layout.MANIFEST_FILE)}
        held = {p.name for p in self.path.iterdir() if layout.is_managed(p.name)} - {
            layout.CARD_FILE,
            layout.MANIFEST_FILE,
        }
        if staged != held or not (self.path / layout.MANIFEST_FILE).is_file():
            return False
        return all(_same_tree(staging / name, self.path / name) for name in staged)

    def swap(self, names: list[str]) -> None:
        """Replace the folder's items by the staged ``names``: old items out, new in, old removed."""
        old = [p.name for p in self.path.iterdir() if layout.is_managed(p.name)]
        _write_atomic(self.work / layout.SWAP_FILE, {"new": names, "old": old})
        previous = self.work / layout.PREVIOUS_DIR
        shutil.rmtree(previous, ignore_errors=True)
        previous.mkdir()
        moves: list[tuple[Path, Path]] = []
        try:
            for name in old:
                moves.append(_move(self.path / name, previous / name))
            for name in names:
                moves.append(_move(self.work / layout.STAGING_DIR / name, self.path / name))
        except BaseException:
            for source, target in reversed(moves):  # roll back: the previous output, as it was
                os.replace(target, source)
            (self.work / layout.SWAP_FILE).unlink(missing_ok=True)
            raise
        self._end_swap()

    def finish_swap(self) -> None:
        """A swap cut short by a crash: move what was not moved yet (the staged output is complete)."""
        journal = self.work / layout.SWAP_FILE
        if not journal.exists():
            return
        plan = read_json(journal)
        previous, staging = self.work / layout.PREVIOUS_DIR, self.work / layout.STAGING_DIR
        previous.mkdir(exist_ok=True)
        staged = {name for name in plan.get("new", []) if (staging / name).exists()}
        for name in plan.get("old", []):  # still in place, and not a new item already swapped in
            if (self.path / name).exists() and (name in staged or name not in plan.get("new", [])):
                _move(self.path / name, previous / name)
        for name in staged:
            _move(staging / name, self.path / name)
        self._end_swap()

    def _end_swap(self) -> None:
        (self.work / layout.SWAP_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.work / layout.PREVIOUS_DIR, ignore_errors=True)
        shutil.rmtree(self.work / layout.STAGING_DIR, ignore_errors=True)


def write_manifest_and_card(folder: Path, manifest: dict[str, Any]) -> None:
    """The folder's ``manifest.json`` and its card ``README.md`` (the Hub metadata lists its configs)."""
    from skillmix.pipelines.card import render_folder_card

    (folder / layout.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    (folder / layout.CARD_FILE).write_text(render_folder_card(manifest))


def _configs(result: RunResult, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    surplus = result.surplus_ids()
    configs = {
        f"k{k}": [r for r in records if r["k"] == k and r["outcome"] == "kept" and r["id"] not in surplus]
        for k in result.config.k
    }
    configs["surplus"] = [r for r in records if r["id"] in surplus]
    configs["rejected"] = [r for r in records if r["outcome"] == "rejected"]
    configs["failed"] = [r for r in records if r["outcome"] == "failed"]
    configs["preference"] = preference_pairs(records, result.config.pairing)
    return configs


def _same_tree(a: Path, b: Path) -> bool:
    """Two files, or two folders of files, with the same names and bytes."""
    if a.is_file() or b.is_file():
        return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all((a / name).read_bytes() == (b / name).read_bytes() for name in names)


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _move(source: Path, target: Path) -> tuple[Path, Path]:
    os.replace(source, target)
    return source, target


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(temporary, path)
