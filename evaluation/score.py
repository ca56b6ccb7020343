"""From the samples of an evaluation to its results, with no request: what ``skillmix eval`` writes and what
``skillmix eval rescore`` recomputes.

Each sample is one generation of one combination. Whose doing each status is comes from
:mod:`skillmix.statuses`; its grader runs enter :func:`skillmix.metrics.aggregate`, under the run's
:class:`skillmix.rules.ScoringRules` (given whole to every function here, with no default), as follows:

* a generation the student could not produce (a refusal, a reply with no ``Answer:``, a reply cut at
  ``max_tokens``, an invalid request) earned nothing: all its points are 0 in every run; it is counted in
  ``failed_generations``;
* a generation the infrastructure stopped (an API error left after the retries, in the student's requests or
  in any of the judge's) is **errored**: left out of the metrics, counted in ``errored_generations`` and
  listed (``errored``); ``skillmix eval`` then exits 1, and the same command again retries just those;
* a grader run that could not be parsed loses its vote: its points are missing, never zeros
  (``unparseable_grades``). A generation with no parseable run at all (``ungraded_generations``) scores 0
  under the rules' ``unparseable: zero`` (the default: leaving it out would raise the mean with every
  grade the judge botched); ``unparseable: drop`` leaves it out instead. The original code zeroes every
  unreadable run before its vote, so that one unreadable run of three can turn a 2-1 majority into a tie:
  a deliberate deviation (README);
* a generation never started (the spending cap) or stopped before it was graded is left out (``not_run``),
  as is a combination none of whose generations was graded (``excluded``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from skillmix.metrics import METRICS, aggregate
from skillmix.rules import ScoringRules
from skillmix.statuses import generation_class

ORDER = {"train": 0, "held-out": 1, "all": 2}


def sample_class(sample: dict[str, Any]) -> str:
    """``ok``, ``failed``, ``errored`` or ``not run`` (see the module docstring)."""
    stages = [sample.get("round1_status"), sample.get("round2_status")]
    return generation_class(stages, sample.get("grader_status") or [])


def run_points(sample: dict[str, Any], runs: int, rules: ScoringRules) -> np.ndarray:
    """(runs, k+3) points of one generation: parsed runs as given, lost votes NaN, a failed generation 0,
    an errored or unstarted one NaN, one with no parseable run 0 (``rules.unparseable == "drop"``: NaN)."""
    width = sample["k"] + 3
    points = np.full((runs, width), np.nan)
    kind = sample_class(sample)
    if kind == "failed":
        points[:] = 0.0
    if kind != "ok":
        return points
    for i, (status, parsed) in enumerate(
        zip(sample.get("grader_status") or [], sample.get("grader_points") or [], strict=False)
    ):
        if i < runs and status == "ok" and parsed is not None and len(parsed) == width:
            points[i] = parsed
    if np.isnan(points).all() and rules.unparseable == "zero":
        points[:] = 0.0
    return points


def ungraded(sample: dict[str, Any]) -> bool:
    """A generation that was produced and graded, but none of whose grader runs could be parsed."""
    statuses = sample.get("grader_status") or []
    return sample_class(sample) == "ok" and bool(statuses) and "ok" not in statuses


def combination_values(
    samples: list[dict[str, Any]],
    k: int,
    runs: int,
    generations: int,
    rules: ScoringRules,
) -> tuple[list[str], Any]:
    """The combinations of one (setting, k) and their :func:`skillmix.metrics.aggregate` (whose
    ``per_combination`` is in the order of the ids: the best generation's metrics, NaN when none counts)."""
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
                points[c, g] = run_points(sample, runs, rules)
                texts[c][g] = sample.get("answer")
    summary = aggregate(points, k, rules, texts, skills)
    return list(combos), summary


def score_group(
    samples: list[dict[str, Any]],
    k: int,
    runs: int,
    generations: int,
    rules: ScoringRules,
) -> dict[str, Any]:
    """The result of one (setting, k): the metrics of :func:`skillmix.metrics.aggregate` and the counts."""
    _ids, summary = combination_values(samples, k, runs, generations, rules)
    classes = [sample_class(s) for s in samples]
    graded = [s for s, kind in zip(samples, classes, strict=True) if kind == "ok"]
    statuses = [status for s in graded for status in s.get("grader_status") or []]
    return {
        "k": k,
        "n": summary.n,
        "excluded": summary.excluded,
        **{name: _finite(summary[name].to_dict()) for name in METRICS},
        "generations": len(samples),
        "failed_generations": classes.count("failed"),
        "errored_generations": classes.count("errored"),
        "not_run": classes.count("not run"),
        "unparseable_grades": statuses.count("unparseable"),
        "ungraded_generations": sum(ungraded(s) for s in graded),
        "judge_errors": sum(1 for s in statuses if s not in ("ok", "unparseable", "skipped")),
    }


def groups(samples: Iterable[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """The samples by (setting, k), in the papers' order (settings, then k)."""
    found: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for sample in samples:
        found.setdefault((sample["setting"], int(sample["k"])), []).append(sample)
    return {key: found[key] for key in sorted(found, key=lambda key: (ORDER.get(key[0], 9), key[0], key[1]))}


def score_samples(
    samples: Iterable[dict[str, Any]],
    runs: int,
    generations: int,
    rules: ScoringRules,
) -> list[dict[str, Any]]:
    """One result per (setting, k) present in ``samples``, in the papers' order (settings, then k)."""
    return [
        {"setting": setting, **score_group(group, k, runs, generations, rules)}
        for (setting, k), group in groups(samples).items()
    ]


def errored_ids(samples: Iterable[dict[str, Any]]) -> list[str]:
    """The generations the infrastructure stopped: what the same command again retries."""
    return [s["id"] for s in samples if sample_class(s) == "errored"]


def _finite(summary: dict[str, float]) -> dict[str, float | None]:
    """JSON has no NaN: a value that cannot be computed (no combination graded, one combination's
    standard error) is null."""
    return {
        key: (None if value is None or np.isnan(value) else float(value)) for key, value in summary.items()
    }
