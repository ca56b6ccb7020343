"""The bookkeeping of a dataset build: its rows (:class:`RunResult`), their counts, and the manifest.

What the rows become on disk is :mod:`skillmix.dataset_folder.writer`.
"""

from __future__ import annotations

import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from skillmix.dataset_folder import layout
from skillmix.dataset_folder.layout import combination_of, failures_by_reason
from skillmix.pipelines.config import DatasetConfig
from skillmix.pipelines.usage import row_usd, rows_usage, usd
from skillmix.prompts import PromptSet
from skillmix.splits import Split
from skillmix.statuses import INFRASTRUCTURE, whose

OUTCOMES = ("kept", "rejected", "failed")


class RunFailed(RuntimeError):
    """The run cannot end with a complete, consistent folder (rows missing, the write failed): the previous
    output is left as it was, and the command exits with code 1."""


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("skillmix", "distilabel", "openai", "datasets", "pyarrow", "huggingface-hub"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


@dataclass
class RunResult:
    config: DatasetConfig
    models: tuple[Any, ...]
    split: Split
    rows: list[dict[str, Any]] = field(default_factory=list)
    drawn: list[str] = field(default_factory=list)  # the ids of every combination drawn, in order
    wall_seconds: float = 0.0  # this run's
    record: dict[str, Any] = field(default_factory=dict)  # what every run into the folder cost (Ledger)
    written: bool = True  # False: the run changed nothing, and the folder was left as it was

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def missing(self) -> list[str]:
        """Drawn combinations with no row, or with a row that has no outcome (the invariant's breaches)."""
        done = {r["id"] for r in self.rows if r.get("outcome") in OUTCOMES}
        return [rid for rid in self.drawn if rid not in done]

    def check_complete(self) -> None:
        """kept + surplus + rejected + failed = sampled for every k, and every drawn row is there."""
        missing = self.missing()
        extra = len(self.rows) - len({r["id"] for r in self.rows})
        if missing or extra or len(self.rows) != len(self.drawn):
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise RunFailed(
                f"the run is incomplete: {len(missing)} of {len(self.drawn)} rows have no outcome"
                + (f" ({shown})" if missing else f"; {extra} rows twice")
                + "; the previous output was left as it was: run the same command again to finish"
            )

    def of_k(self, k: int) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["k"] == k]

    def kept(self, k: int) -> int:
        """Combinations of ``k`` with a full-mark text (with one generation each: the kept rows)."""
        return len(self._first_full_marks(k)[0])

    def graded(self, k: int) -> int:
        """Combinations of ``k`` with a graded text (kept or rejected)."""
        return len({combination_of(r) for r in self.of_k(k) if r["outcome"] in ("kept", "rejected")})

    def acceptance(self, k: int) -> float:
        """The share of graded texts of ``k`` with full marks (each generation counts)."""
        graded = [r for r in self.of_k(k) if r["outcome"] in ("kept", "rejected")]
        return sum(r["outcome"] == "kept" for r in graded) / len(graded) if graded else 0.0

    def _first_full_marks(self, k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The full-mark texts of ``k`` in draw order: the lowest generation of each combination, and the
        others (more full-mark generations of a combination already kept)."""
        order = {rid: i for i, rid in enumerate(self.drawn)}
        full = sorted(
            (r for r in self.of_k(k) if r["outcome"] == "kept"), key=lambda r: order.get(r["id"], len(order))
        )
        first: list[dict[str, Any]] = []
        others: list[dict[str, Any]] = []
        seen: set[str] = set()
        for row in full:
            (others if combination_of(row) in seen else first).append(row)
            seen.add(combination_of(row))
        return first, others

    def split_kept(self, k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The kept rows of ``k`` in draw order: one per combination, the first ``--target-accepted`` of
        them; and the surplus (those beyond the target, and a combination's other full-mark texts)."""
        first, others = self._first_full_marks(k)
        target = self.config.target_accepted
        kept, beyond = (first, []) if target is None else (first[:target], first[target:])
        return kept, beyond + others

    def surplus_ids(self) -> set[str]:
        return {r["id"] for k in self.config.k for r in self.split_kept(k)[1]}

    def counts(self) -> dict[str, Any]:
        per_k = {}
        for k in self.config.k:
            rows = self.of_k(k)
            outcomes = Counter(r["outcome"] for r in rows)
            kept, surplus = self.split_kept(k)
            per_k[f"k{k}"] = {
                "sampled": len(rows),
                "kept": len(kept),
                "surplus": len(surplus),
                "rejected": outcomes["rejected"],
                "failed": outcomes["failed"],
                "failed_generation": sum(
                    r["outcome"] == "failed" and str(r.get("failure_reason", "")).startswith("round")
                    for r in rows
                ),
                "acceptance_rate": round(self.acceptance(k), 4),
            }
            if self.config.generations > 1:
                combinations = len({combination_of(r) for r in rows})
                per_k[f"k{k}"]["combinations"] = combinations
                per_k[f"k{k}"]["combinations_kept"] = self.kept(k)
            shortfall = self.shortfall(k)
            if shortfall:
                per_k[f"k{k}"]["shortfall"] = shortfall
        failed = [r for r in self.rows if r["outcome"] == "failed"]
        surplus_ids = self.surplus_ids()
        surplus_usd = sum(row_usd(r) for r in self.rows if r["id"] in surplus_ids)
        return {
            "per_k": per_k,
            "failures_by_reason": failures_by_reason(failed),
            "errored": sum(whose(r.get("status")) == INFRASTRUCTURE for r in failed),
            "rejected_by_item": rejected_by_item([r for r in self.rows if r["outcome"] == "rejected"]),
            "surplus_usd": round(surplus_usd, 6),
        }

    def shortfall(self, k: int) -> str | None:
        """Why fewer than ``--target-accepted`` rows of ``k`` were kept (None when the target was met)."""
        target = self.config.target_accepted
        if target is None or self.kept(k) >= target:
            return None
        if any(r.get("status") == "budget" for r in self.of_k(k)):
            return f"kept {self.kept(k)} of {target}: the spending limit was reached"
        return f"kept {self.kept(k)} of {target}: no combinations left to draw"

    def usage(self) -> dict[str, Any]:
        return rows_usage(self.rows)


REJECTION_ITEMS = ("a skill", "the topic", "making sense", "the length")


def rejected_by_item(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many rejected rows missed each kind of rubric item (a row may miss several), most missed first."""
    missed: Counter[str] = Counter()
    for row in rows:
        points, k = row.get("points") or [], len(row["skills"])
        kinds = {"a skill" if i < k else REJECTION_ITEMS[i - k + 1] for i, p in enumerate(points) if p != 1}
        missed.update(kinds)
    return dict(missed.most_common())


class Ledger:
    """What a folder cost over every run that built it, from its request cache: the spend ledger (every
    billed answer, whichever run paid it) and the record of the runs before this one (:meth:`start`, then
    :meth:`record` at the end of the run)."""

    def __init__(self, work: Any, started: float) -> None:
        from skillmix.llm.cache import RequestCache

        self.started = started
        self.cache = RequestCache(work / layout.CACHE_FILE)
        self.spent_before = self.cache.spent_usd()
        self.answers_before = len(self.cache)
        self.before = self.cache.runs()

    def record(self, wall_seconds: float) -> dict[str, Any]:
        """The folder's totals with this run in them, and this run's own spend."""
        spent = self.cache.spent_usd()
        last = {
            "cost_usd": round(spent - self.spent_before, 6),
            "wall_seconds": round(wall_seconds, 2),
            "answers": len(self.cache) - self.answers_before,
        }
        return {
            "cost_usd": spent,
            "wall_seconds": self.before["wall_seconds"] + wall_seconds,
            "runs": {"count": self.before["runs"] + 1, "last_run": last},
        }

    def close(self, result: RunResult) -> None:
        """Remember this run (when it wrote the folder: a run that changed nothing built nothing)."""
        if result.written:
            last = result.record["runs"]["last_run"]
            self.cache.record_run(self.started, result.wall_seconds, last["cost_usd"], last["answers"])
        self.cache.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        """A run that ends in an exception (an interruption) built part of the folder: remember it."""
        if error is not None:
            last = self.record(time.time() - self.started)["runs"]["last_run"]
            self.cache.record_run(self.started, last["wall_seconds"], last["cost_usd"], last["answers"])
            self.cache.close()


def build_manifest(result: RunResult, prompts: PromptSet, written: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a finished build: its configuration, split, models, counts, usage and cost.

    ``usage`` is by role, from the rows (each request once, at what it cost when it was paid);
    ``cost_usd`` and ``wall_seconds`` are the folder's totals over every run that built it (a request
    answered twice, before and after a crash, was billed twice: the ledger counts both), and
    ``runs.last_run`` is this run's own spend and time."""
    config = result.config
    usage = result.usage()
    return {
        "skillmix_manifest": 1,
        "preset": config.preset,
        "config": config.to_dict(),
        "fingerprint": config.fingerprint(),
        "seeds": {
            "sampling": config.seed,
            "split": config.split_seed,
            "teacher": config.teacher.seed,
            "judge": config.judge.seed,
        },
        "split": {
            "seed": result.split.seed,
            "hash": result.split.hash,
            "skills_hash": result.split.skills_hash,
            "topics_hash": result.split.topics_hash,
            "catalog_hash": result.split.catalog_hash,
        },
        "models": {
            m.role: {
                "model": m.model,
                "endpoint": "embedded" if m.where == "embedded llama.cpp" else (m.base_url or "openai"),
                "embedded": m.where == "embedded llama.cpp",
            }
            for m in result.models
        },
        "judge": config.judge_protocol(),
        "prompt_hashes": prompts.hashes(),
        "versions": _versions(),
        "counts": result.counts(),
        "configs": written,
        "usage": usage,
        "cost_usd": round(result.record.get("cost_usd", usd(usage)), 6),
        "wall_seconds": round(result.record.get("wall_seconds", result.wall_seconds), 2),
        "runs": result.record.get(
            "runs",
            {
                "count": 1,
                "last_run": {"cost_usd": round(usd(usage), 6), "wall_seconds": round(result.wall_seconds, 2)},
            },
        ),
        "embedded": any(m.where == "embedded llama.cpp" for m in result.models),
    }
