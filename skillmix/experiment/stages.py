"""The stages of an experiment, what each one's inputs are, and which of them must run again.

The stages, in order: ``dataset`` (``skillmix dataset``), ``publish`` (only with ``hub.dataset_repo``),
``train/<student>/<set>`` for every student and training set (``skillmix train`` in a process of its own,
through ``accelerate launch`` when the launcher asks for several processes), ``eval/<student>/<set>`` for
every fine-tuned model and every student's base (``skillmix eval`` on the dataset's eval set, with the
dataset's judge and protocol), with ``evaluation.cross_judge`` ``cross-judge/<student>/<set>`` for each
evaluation (:mod:`skillmix.evaluation.crossjudge`), then ``compare`` and ``report``. A training set with
``seeds`` has one training and one evaluation per seed (``<set>@seed<N>``). Each writes its own folder under
``runs/<experiment>/``.

**Fingerprints.** A stage's fingerprint hashes its own settings and the fingerprints of the stages it reads
(a training run: its resolved recipe and launcher, and the dataset's fingerprint; an evaluation: its
settings and the training's fingerprint); the fingerprints of every stage are computed before the first
runs. ``runs/<experiment>/stages.json`` records, for each stage, the fingerprint it was started with and
whether it finished. A finished stage whose fingerprint is unchanged is skipped; any other runs, and its
command resumes what its folder holds (the dataset and the evaluation from their request caches, the
training from its last checkpoint) when the folder's own key is unchanged: a dataset that grows, an
evaluation that asks more combinations, a training given more steps pay only for what is new. When the key
changed (another teacher or judge, another recipe), the old folder is moved aside to ``<folder>.previous``
and the stage starts afresh. Editing one student's recipe thus
re-runs that student's training and evaluations, then the comparison and the report; nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.experiment.config import BASE, ExperimentConfig
from skillmix.skills import content_hash

STAGES_FILE = "stages.json"


@dataclass
class Stage:
    """One stage: its name, its folder, its fingerprint and its folder's key."""

    name: str
    folder: Path
    fingerprint: str
    kind: str  # dataset, publish, train, eval, crossjudge, compare, report
    student: str | None = None
    training_set: str | None = None
    folder_key: str = ""  # what the folder's own run is keyed on: a change of anything else resumes it


class Ledger:
    """``stages.json``: the fingerprint each stage was started with and whether it finished."""

    def __init__(self, root: Path) -> None:
        self.path = root / STAGES_FILE
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self.entries = json.loads(self.path.read_text(encoding="utf-8")).get("stages", {})

    def done(self, stage: Stage) -> bool:
        entry = self.entries.get(stage.name) or {}
        return entry.get("fingerprint") == stage.fingerprint and bool(entry.get("finished"))

    def status(self, stage: Stage) -> str:
        entry = self.entries.get(stage.name)
        if entry is None:
            return "new"
        if entry.get("fingerprint") != stage.fingerprint:
            return "changed"
        return "done" if entry.get("finished") else "unfinished"

    def start(self, stage: Stage) -> None:
        """Record the start; a folder left by a run the stage's command would refuse (another
        ``folder_key``) is moved aside first; one that only differs in size or steps is resumed in place."""
        entry = self.entries.get(stage.name) or {}
        if entry.get("folder_key") not in (None, stage.folder_key) and stage.folder.exists():
            aside = stage.folder.with_name(stage.folder.name + ".previous")
            shutil.rmtree(aside, ignore_errors=True)
            stage.folder.rename(aside)
        self.entries[stage.name] = {"fingerprint": stage.fingerprint, "folder_key": stage.folder_key,
                                    "finished": None}  # fmt: skip
        self._write()

    def finish(self, stage: Stage, seconds: float) -> None:
        self.entries[stage.name] = {
            "fingerprint": stage.fingerprint,
            "folder_key": stage.folder_key,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 1),
            "folder": str(stage.folder),
        }
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{STAGES_FILE}.tmp")
        staging.write_text(json.dumps({"stages": self.entries}, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(staging, self.path)


def fingerprint(payload: Any) -> str:
    return content_hash(payload)[:16]


def stage_names(config: ExperimentConfig) -> list[tuple[str, str, str | None, str | None]]:
    """``(name, kind, student, training set)`` of every stage, in the order they run."""
    names: list[tuple[str, str, str | None, str | None]] = [("dataset", "dataset", None, None)]
    if config.hub.dataset_repo:
        names.append(("publish", "publish", None, None))
    names += [(f"train/{s}/{ts}", "train", s, ts) for s, ts in config.runs()]
    models = [(s, BASE) for s, student in config.students.items() if student.base] + config.runs()
    names += [(f"eval/{s}/{ts}", "eval", s, ts) for s, ts in models]
    if config.evaluation.cross_judge is not None:
        names += [(f"cross-judge/{s}/{ts}", "crossjudge", s, ts) for s, ts in models]
    names += [("compare", "compare", None, None), ("report", "report", None, None)]
    return names


def folder_of(config: ExperimentConfig, name: str) -> Path:
    """``runs/<experiment>/<stage>``, with a training run's and an evaluation's names flattened:
    ``train/<student>--<set>``, ``eval/<student>--<set>``."""
    parts = name.split("/")
    if len(parts) == 3:
        return config.root() / parts[0] / f"{parts[1]}--{parts[2]}"
    return config.root() / name
