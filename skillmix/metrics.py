"""The Skill-Mix metrics, from the k+3 rubric points of graded texts to a mean with its uncertainty.

Points are in rubric order: ``k`` skill points, then topic, sense, length. For one decided points vector

* **Ratio of Full Marks**: 1 if all k+3 points are earned;
* **Ratio of All Skills**: 1 if all k skill points and at least 2 of the other 3 are earned;
* **Skill Fraction**: skill points / k if all 3 non-skill points are earned, else 0.

The pipeline of :func:`aggregate` over an array shaped (combinations, generations, grader_runs, k+3):

1. majority vote over grader runs, point by point (a strict majority of the runs that parsed; a tie
   earns 0; a run that could not be parsed is NaN and does not vote);
2. the text checks of the :class:`skillmix.rules.ScoringRules` given (every scoring function takes them,
   with no default): the length point replaced by the sentence counter on the answer
   (``length_override``), skill points set to 0 for skills the answer names explicitly (``name_penalty``,
   the harder variant of 2409.19808);
3. the three metrics per generation; the max over the generations of a combination;
4. the mean over combinations, its standard error (sample std / sqrt(n)) and a percentile bootstrap
   interval. Combinations with no graded generation are left out and counted in ``excluded``.

Two runs that answered the same combinations are compared pair by pair, not by their intervals (two
overlapping 95% intervals can hide a difference that every combination shows): :func:`paired_bootstrap`
gives the mean of the per-combination differences with a percentile interval (a resample draws
combinations, so both runs are drawn together), :func:`paired_permutation_p` the two-sided p-value of a
sign-flip test (under "no difference" each combination's difference is as likely either sign).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from skillmix.skills import skill_name
from skillmix.text import count_sentences, max_sentences, named_skills

if TYPE_CHECKING:
    from skillmix.rules import ScoringRules

METRICS: tuple[str, ...] = ("full_marks", "all_skills", "skill_fraction")


@dataclass(frozen=True)
class MetricSummary:
    mean: float
    stderr: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "stderr": self.stderr, "ci_low": self.ci_low, "ci_high": self.ci_high}


@dataclass(frozen=True)
class Aggregate:
    k: int
    n: int  # combinations that entered the mean
    excluded: int  # combinations with no graded generation
    metrics: dict[str, MetricSummary]
    per_combination: np.ndarray = field(repr=False)  # (combinations, 3), NaN for excluded ones

    def __getitem__(self, name: str) -> MetricSummary:
        return self.metrics[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "n": self.n,
            "excluded": self.excluded,
            **{name: summary.to_dict() for name, summary in self.metrics.items()},
        }


def majority_vote(runs: Any) -> np.ndarray:
    """Decide each point by strict majority over the runs axis (second to last); NaN runs do not vote."""
    runs = _as_points(runs)
    valid = ~np.isnan(runs)
    votes = valid.sum(axis=-2)
    ones = np.where(valid, runs, 0.0).sum(axis=-2)
    decided = (2 * ones > votes).astype(float)
    return np.where(votes > 0, decided, np.nan)


def metric_values(decided: Any, k: int) -> np.ndarray:
    """The three metrics for decided points shaped (..., k+3) -> (..., 3); NaN where points are NaN."""
    p = _as_points(decided)
    _check_width(p, k)
    missing = np.isnan(p).any(axis=-1)
    p = np.nan_to_num(p)
    skills_ok = (p[..., :k] == 1).all(axis=-1)
    others = p[..., k:].sum(axis=-1)
    full = skills_ok & (others == 3)
    all_skills = skills_ok & (others >= 2)
    fraction = np.where(others == 3, p[..., :k].sum(axis=-1) / k, 0.0)
    out = np.stack([full.astype(float), all_skills.astype(float), fraction], axis=-1)
    out[missing] = np.nan
    return out


def length_point(text: str | None, k: int) -> float:
    """The sentence counter's length point: 1.0 when the text has 1 .. max(1, k-1) sentences."""
    return float(text is not None and 0 < count_sentences(text) <= max_sentences(k))


def apply_text_checks(
    decided: np.ndarray, k: int, text: str | None, skills: Sequence[Any] | None, rules: ScoringRules
) -> np.ndarray:
    """A copy of one decided points vector with the text checks of ``rules`` applied: the length point
    recomputed, named skills penalised (``skills``: the k skills in rubric order, needed by the name rule).
    A vector with a missing point is returned as it is."""
    out = np.array(decided, dtype=float)
    if np.isnan(out).any():
        return out
    if rules.length_override:
        out[k + 2] = length_point(text, k)
    if rules.name_penalty:
        if skills is None or len(skills) != k:
            raise ValueError(f"name_penalty needs the {k} skills of the text, in rubric order")
        named = set(named_skills(text, skills))
        for i, skill in enumerate(skills):
            if skill_name(skill) in named:
                out[i] = 0.0
    return out


def score(
    points: Any,
    k: int,
    rules: ScoringRules,
    text: str | None = None,
    skills: Sequence[Any] | None = None,
) -> dict[str, float]:
    """The three metrics of one graded text: ``points`` is (k+3,) decided or (runs, k+3) to be voted."""
    p = _as_points(points)
    if p.ndim == 2:
        p = majority_vote(p)
    _check_width(p, k)
    p = apply_text_checks(p, k, text, skills, rules)
    return dict(zip(METRICS, (float(v) for v in metric_values(p, k)), strict=True))


def aggregate(
    points_array: Any,
    k: int,
    rules: ScoringRules,
    texts: Sequence[Sequence[str | None]] | None = None,
    skills: Sequence[Sequence[Any]] | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Aggregate:
    """Metrics over (combinations, generations, grader_runs, k+3) points, as described in the module doc.

    ``texts[c][g]`` is the answer of generation g of combination c and ``skills[c]`` its k skills in rubric
    order; the text checks of ``rules`` need them. (``rules.unparseable`` is the caller's: a generation it
    scores 0 comes as zeros, one it leaves out as NaN; see :mod:`skillmix.evaluation.score`.)
    """
    p = _as_points(points_array)
    if p.ndim != 4:
        raise ValueError(f"points_array must be (combinations, generations, grader_runs, k+3), got {p.shape}")
    _check_width(p, k)
    decided = majority_vote(p)  # (C, G, k+3)
    if rules.checks_text:
        if texts is None:
            raise ValueError("length_override and name_penalty need the texts")
        for c in range(decided.shape[0]):
            for g in range(decided.shape[1]):
                combo_skills = None if skills is None else skills[c]
                decided[c, g] = apply_text_checks(decided[c, g], k, texts[c][g], combo_skills, rules)
    per_generation = metric_values(decided, k)  # (C, G, 3)
    graded = ~np.isnan(per_generation[..., 0])
    best = np.where(graded[..., None], per_generation, -np.inf).max(axis=1)  # (C, 3)
    best[~graded.any(axis=1)] = np.nan
    kept = best[~np.isnan(best[:, 0])]
    summaries = {
        name: summarize(kept[:, i], n_bootstrap=n_bootstrap, confidence=confidence, seed=seed)
        for i, name in enumerate(METRICS)
    }
    return Aggregate(
        k=k, n=len(kept), excluded=len(best) - len(kept), metrics=summaries, per_combination=best
    )


def summarize(values: Any, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0) -> MetricSummary:
    """Mean, standard error and percentile-bootstrap interval of per-combination values."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return MetricSummary(np.nan, np.nan, np.nan, np.nan)
    mean = float(v.mean())
    stderr = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else np.nan
    if n_bootstrap > 0 and v.size > 1:
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, size=(n_bootstrap, v.size))].mean(axis=1)
        alpha = (1 - confidence) / 2
        low, high = np.quantile(means, [alpha, 1 - alpha])
    else:
        low = high = mean
    return MetricSummary(mean, stderr, float(low), float(high))


def _as_points(points: Any) -> np.ndarray:
    """Float array with NaN for missing points; negative values (e.g. -1 for unparseable) are missing."""
    arr = np.array(points, dtype=float)
    arr[arr < 0] = np.nan
    bad = ~np.isnan(arr) & (arr != 0) & (arr != 1)
    if bad.any():
        raise ValueError(f"points must be 0, 1 or missing (NaN/-1), found {arr[bad][0]!r}")
    return arr


def _check_width(points: np.ndarray, k: int) -> None:
    if k < 1 or points.shape[-1] != k + 3:
        raise ValueError(f"expected k+3 = {k + 3} points for k={k}, got a last axis of {points.shape[-1]}")


# ---------------------------------------------------------------------- two runs, combination by combination


@dataclass(frozen=True)
class PairedDifference:
    n: int  # pairs (combinations both runs scored)
    difference: float  # mean of b - a
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PermutationTest:
    p: float
    exact: bool  # every sign pattern enumerated, or random ones drawn
    permutations: int  # sign patterns counted: 2**(nonzero differences) when exact


def paired_bootstrap(
    a: Any, b: Any, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """Mean of ``b - a`` over paired values and its percentile bootstrap interval: each of ``n_resamples``
    resamples draws pairs with replacement (the same draw for both runs, i.e. of the differences)."""
    d = _differences(a, b)
    if d.size == 0:
        return PairedDifference(0, np.nan, np.nan, np.nan)
    found = summarize(d, n_bootstrap=n_resamples, confidence=confidence, seed=seed)
    return PairedDifference(int(d.size), found.mean, found.ci_low, found.ci_high)


def paired_permutation_p(
    a: Any, b: Any, exact_up_to: int = 16, n_permutations: int = 10000, seed: int = 0
) -> PermutationTest:
    """Two-sided p-value of the paired sign-flip test of ``b - a``: the share of sign patterns over the
    nonzero differences whose sum is at least as far from 0 as the observed one. Every one of the 2**m
    patterns when m <= ``exact_up_to``; else ``n_permutations`` random ones, p = (hits + 1) / (draws + 1)."""
    d = _differences(a, b)
    d = d[d != 0]
    observed = abs(float(d.sum())) - 1e-9 * max(1.0, float(np.abs(d).sum()))  # ties count as hits
    if d.size <= exact_up_to:
        patterns = (np.arange(2**d.size)[:, None] >> np.arange(d.size)) & 1  # row i: the bits of i
        sums = np.abs((1 - 2 * patterns) @ d)
        return PermutationTest(float(np.mean(sums >= observed)), True, 2**d.size)
    rng = np.random.default_rng(seed)
    hits, block = 0, max(1, 2**20 // d.size)
    for start in range(0, n_permutations, block):
        signs = 1 - 2 * rng.integers(0, 2, size=(min(block, n_permutations - start), d.size))
        hits += int(np.sum(np.abs(signs @ d) >= observed))
    return PermutationTest((hits + 1) / (n_permutations + 1), False, n_permutations)


def _differences(a: Any, b: Any) -> np.ndarray:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or np.isnan(a).any() or np.isnan(b).any():
        raise ValueError(
            f"paired values must be two NaN-free arrays of one length, got {a.size} and {b.size}"
        )
    return b - a
