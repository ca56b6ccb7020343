"""From the samples of an evaluation to its results, with no request: what ``skillmix eval`` writes and what
``skillmix eval rescore`` recomputes.

Each sample is one generation of one combination. Its grader runs enter
:func:`skillmix.metrics.aggregate` as they were parsed, with these rules:

* a grader run that could not be parsed (or that the judge failed to answer) loses its vote: its points are
  missing, never zeros; such runs are counted (``unparseable_grades``, ``judge_errors``);
* a generation the student could not produce (an API error, a refusal, a reply with no answer) earned
  nothing: all its points are 0 in every run, and it is counted in ``failed_generations``;
* a generation never started (the spending cap) or stopped before it was graded is left out, as is a
  combination none of whose generations was graded (``excluded``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from skillmix.metrics import METRICS, aggregate

# Statuses of a sample whose generation the student failed (it earned nothing).
STUDENT_FAILED = ("api_error", "refused", "unparseable", "empty", "truncated", "content_filter")
NOT_RUN = ("budget", "interrupted", "skipped")


def generation_failed(sample: dict[str, Any]) -> bool:
    """Whether the student could not produce this generation (see the module docstring)."""
    for stage in ("round1", "round2"):
        status = sample.get(f"{stage}_status")
        if status != "ok":
            return status not in NOT_RUN and status is not None
    return False


def run_points(sample: dict[str, Any], runs: int) -> np.ndarray:
    """(runs, k+3) points of one generation: parsed runs as given, lost votes NaN, a failed generation 0."""
    width = sample["k"] + 3
    points = np.full((runs, width), np.nan)
    if generation_failed(sample):
        points[:] = 0.0
        return points
    for i, (status, parsed) in enumerate(zip(sample.get("grader_status") or [], sample.get("grader_points")
                                             or [], strict=False)):  # fmt: skip
        if i < runs and status == "ok" and parsed is not None and len(parsed) == width:
            points[i] = parsed
    return points


def score_group(
    samples: list[dict[str, Any]], k: int, runs: int, generations: int, length_override: bool,
    name_penalty: bool,
) -> dict[str, Any]:  # fmt: skip
    """The result of one (setting, k): the metrics of :func:`skillmix.metrics.aggregate` and the counts."""
    combos: dict[str, dict[int, dict[str, Any]]] = {}
    for sample in samples:
        combos.setdefault(sample["combination"], {})[int(sample["generation"])] = sample
    points = np.full((len(combos), generations, runs, k + 3), np.nan)
    texts: list[list[str | None]] = []
    skills: list[list[str]] = []
    for c, by_generation in enumerate(combos.values()):
        texts.append([None] * generations)
        skills.append(list(next(iter(by_generation.values()))["skills"]))
        for g, sample in by_generation.items():
            if g < generations:
                points[c, g] = run_points(sample, runs)
                texts[c][g] = sample.get("answer")
    summary = aggregate(points, k, texts, skills, length_override=length_override, name_penalty=name_penalty)
    statuses = [
        s for sample in samples if not generation_failed(sample) for s in sample.get("grader_status") or []
    ]
    return {
        "k": k,
        "n": summary.n,
        "excluded": summary.excluded,
        **{name: _finite(summary[name].to_dict()) for name in METRICS},
        "generations": len(samples),
        "failed_generations": sum(generation_failed(s) for s in samples),
        "not_run": sum(_not_run(s) for s in samples),
        "unparseable_grades": statuses.count("unparseable"),
        "judge_errors": sum(1 for s in statuses if s not in ("ok", "unparseable", "skipped")),
    }


def score_samples(
    samples: Iterable[dict[str, Any]], runs: int, generations: int, length_override: bool = True,
    name_penalty: bool = True,
) -> list[dict[str, Any]]:  # fmt: skip
    """One result per (setting, k) present in ``samples``, in the papers' order (settings, then k)."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for sample in samples:
        groups.setdefault((sample["setting"], int(sample["k"])), []).append(sample)
    order = {"train": 0, "held-out": 1, "all": 2}
    out = []
    for setting, k in sorted(groups, key=lambda key: (order.get(key[0], 9), key[0], key[1])):
        result = score_group(groups[(setting, k)], k, runs, generations, length_override, name_penalty)
        out.append({"setting": setting, **result})
    return out


def _not_run(sample: dict[str, Any]) -> bool:
    return not generation_failed(sample) and any(
        sample.get(f"{stage}_status") in NOT_RUN for stage in ("round1", "round2")
    )


def _finite(summary: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: a value that cannot be computed (no combination graded, one combination's
    standard error) is null."""
    return {
        key: (None if value is None or np.isnan(value) else float(value)) for key, value in summary.items()
    }
