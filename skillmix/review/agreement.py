"""Agreement between two raters of yes/no items: raw agreement, Cohen's kappa and bootstrap intervals,
by record and weighted by stratum.

Pure functions on arrays of 0/1, where NaN means "not rated": a pair with a NaN on either side is left out.
For pairs with weights ``w`` (1 each unless weighted), observed agreement ``p_o`` (the weighted share of
equal pairs) and weighted rates of "1" ``p_a`` and ``p_b``, the chance agreement is
``p_e = p_a p_b + (1 - p_a)(1 - p_b)`` and Cohen's kappa is ``(p_o - p_e) / (1 - p_e)``.

Degenerate cases: no pair leaves every figure undefined (``None``). When both raters gave one and the same
value to every item, ``p_e = 1`` and kappa is 0/0: undefined (``None``), though raw agreement is 1. Two
raters who are each constant but differ have ``p_e = 0`` and kappa 0.

**The unit of resampling is the record.** A pair belongs to a record (``records``: one id per pair; the k
skill items of a review record are k pairs of one record), and the bootstrap draws records with replacement,
each bringing all its pairs: the items of one text are correlated (one careless reading fails them all), so
resampling single items would give intervals too narrow. Without ``records`` every pair is its own record.
``n_boot`` resamples of the R records are drawn with ``numpy.random.default_rng(seed)`` as
``rng.integers(0, R, (n_boot, R))`` (as :func:`skillmix.metrics.summarize` draws). Intervals are the
percentiles of the resampled figures; resamples where kappa is undefined are left out of kappa's interval,
which is ``None`` when none is left.

**Weights** (``weights``: one per record) make the figures those of a population rather than of the
sample: for a stratified sample a record of stratum ``s`` stands for ``N_s / n_s`` rows of the dataset
(:func:`stratum_weights`). A weighted figure is resampled the same way, each record keeping its weight
(the weights renormalised in every resample). Resampling within strata instead would give every stratum
of one record, common in a review sample spread over many strata, no variance at all: intervals of zero
width that claim a precision the sample does not have.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from skillmix.metrics import summarize

N_BOOT = 1000
CONFIDENCE = 0.95


def paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """The pairs rated on both sides, as two float arrays of 0/1."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"the two raters rated {x.size} and {y.size} items: they must rate the same items")
    both = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[both], y[both]
    if ((x != 0) & (x != 1)).any() or ((y != 0) & (y != 1)).any():
        raise ValueError("ratings must be 0, 1 or NaN (not rated)")
    return x, y


def _raw(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted raw agreement along the last axis (``w`` broadcast against the pairs)."""
    return ((x == y) * w).sum(axis=-1) / w.sum(axis=-1)


def _kappa(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Cohen's kappa along the last axis; NaN where it is undefined (p_e = 1)."""
    total = w.sum(axis=-1)
    p_o = ((x == y) * w).sum(axis=-1) / total
    p_a, p_b = (x * w).sum(axis=-1) / total, (y * w).sum(axis=-1) / total
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    undefined = np.isclose(p_e, 1.0, rtol=0.0, atol=1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (p_o - p_e) / np.where(undefined, 1.0, 1.0 - p_e)
    return np.where(undefined, np.nan, kappa)


def _value(v: Any) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v


def raw_agreement(a: Any, b: Any) -> float | None:
    """The share of pairs on which the raters agree; None without a pair."""
    x, y = paired(a, b)
    return _value(_raw(x, y, np.ones_like(x))) if x.size else None


def cohen_kappa(a: Any, b: Any) -> float | None:
    """Cohen's kappa of the pairs; None without a pair or when undefined (see the module docstring)."""
    x, y = paired(a, b)
    return _value(_kappa(x, y, np.ones_like(x))) if x.size else None


def resample_counts(n_records: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n_records)``: how many times each record is drawn in each resample (module docstring)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n_records))
    np.add.at(counts, (np.arange(n_boot)[:, None], rng.integers(0, n_records, size=(n_boot, n_records))), 1.0)
    return counts


def _by_record(a: Any, b: Any, records: Sequence[Hashable] | None) -> tuple[np.ndarray, ...]:
    """The rated pairs, and the index of each pair's record among the distinct records (first-seen order)."""
    x, y = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    ids = list(range(x.size)) if records is None else list(records)
    if len(ids) != x.size:
        raise ValueError(f"{len(ids)} record ids for {x.size} pairs")
    rated = ~np.isnan(x) & ~np.isnan(y) if x.shape == y.shape else np.ones(x.size, dtype=bool)
    x, y = paired(x, y)  # refuses raters of different lengths
    ids = [i for i, kept in zip(ids, rated, strict=True) if kept]
    order = list(dict.fromkeys(ids))
    where = {r: n for n, r in enumerate(order)}
    return x, y, np.array([where[i] for i in ids], dtype=int), np.array(order, dtype=object)


def agreement(
    a: Any,
    b: Any,
    records: Sequence[Hashable] | None = None,
    weights: Mapping[Hashable, float] | None = None,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """``{n, records, raw, raw_ci, kappa, kappa_ci}`` for two raters of the same items (JSON-ready).

    ``records`` names each pair's record (the unit of resampling), ``weights`` maps a record to its weight
    (module docstring)."""
    x, y, index, order = _by_record(a, b, records)
    out: dict[str, Any] = {"n": int(x.size), "records": int(order.size)}
    if not x.size:
        return {**out, "raw": None, "raw_ci": None, "kappa": None, "kappa_ci": None}
    per_record = np.array([1.0 if weights is None else float(weights[r]) for r in order])
    w = per_record[index]
    figures = {"raw": _value(_raw(x, y, w)), "kappa": _value(_kappa(x, y, w))}
    intervals: dict[str, list[float] | None] = {"raw_ci": None, "kappa_ci": None}
    if n_boot >= 1:
        drawn = (resample_counts(order.size, n_boot, seed) * per_record)[:, index]
        alpha = (1 - confidence) / 2
        for name, values in (("raw_ci", _raw(x, y, drawn)), ("kappa_ci", _kappa(x, y, drawn))):
            values = values[~np.isnan(values)]
            intervals[name] = (
                [float(q) for q in np.quantile(values, [alpha, 1 - alpha])] if values.size else None
            )
    return {**out, "raw": figures["raw"], "raw_ci": intervals["raw_ci"], "kappa": figures["kappa"],
            "kappa_ci": intervals["kappa_ci"]}  # fmt: skip


def bootstrap_intervals(
    a: Any, b: Any, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, list[float] | None]:
    """Item-level percentile intervals ``{"raw": [low, high], "kappa": [low, high]}`` (each pair its own
    record; None when undefined)."""
    figure = agreement(a, b, n_boot=n_boot, confidence=confidence, seed=seed)
    return {"raw": figure["raw_ci"], "kappa": figure["kappa_ci"]}


def proportion(
    values: Any,
    weights: Sequence[float] | None = None,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """``{n, share, ci}``: the (weighted) mean of 0/1 values, one per record (NaN left out), with its
    percentile bootstrap interval (records resampled as :func:`agreement` resamples them)."""
    v = np.asarray(values, dtype=float).ravel()
    keep = ~np.isnan(v)
    if not keep.any():
        return {"n": 0, "share": None, "ci": None}
    if weights is None:  # a simple random sample: the package's one bootstrap
        summary = summarize(v[keep], n_bootstrap=n_boot, confidence=confidence, seed=seed)
        return {"n": int(keep.sum()), "share": float(summary.mean), "ci": [summary.ci_low, summary.ci_high]}
    v, w = v[keep], np.asarray(weights, dtype=float)[keep]
    share = float((v * w).sum() / w.sum())
    ci = None
    if n_boot >= 1:
        drawn = resample_counts(v.size, n_boot, seed) * w
        alpha = (1 - confidence) / 2
        ci = [
            float(q) for q in np.quantile((drawn * v).sum(axis=-1) / drawn.sum(axis=-1), [alpha, 1 - alpha])
        ]
    return {"n": int(v.size), "share": share, "ci": ci}


def stratum_weights(
    sample: Mapping[Hashable, Hashable], population: Mapping[Hashable, int]
) -> tuple[dict[Hashable, float], float]:
    """``({record: N_s / n_s}, coverage)`` for records ``{record: stratum}`` drawn from a population of
    ``{stratum: N_s}`` rows; ``coverage`` is the share of the population's rows in strata the sample
    reaches (a stratum without a record cannot be weighted back: the weighted figures leave it out)."""
    sizes: dict[Hashable, int] = {}
    for s in sample.values():
        sizes[s] = sizes.get(s, 0) + 1
    missing = sorted(str(s) for s in sizes if not population.get(s))
    if missing:
        raise ValueError(f"records of strata the population lacks: {', '.join(missing)}")
    total = sum(population.values())
    covered = sum(population[s] for s in sizes)
    weights = {r: population[s] / sizes[s] for r, s in sample.items()}
    return weights, (covered / total if total else 0.0)
