"""Agreement between two raters of yes/no items: raw agreement, Cohen's kappa and bootstrap intervals.

Pure functions on arrays of 0/1, where NaN means "not rated": a pair with a NaN on either side is left out.
For ``n`` pairs with observed agreement ``p_o`` (the share of equal pairs) and rates of "1" ``p_a`` and
``p_b``, the chance agreement is ``p_e = p_a p_b + (1 - p_a)(1 - p_b)`` and Cohen's kappa is
``(p_o - p_e) / (1 - p_e)``.

Degenerate cases: no pair leaves every figure undefined (``None``). When both raters gave one and the same
value to every item, ``p_e = 1`` and kappa is 0/0: undefined (``None``), though raw agreement is 1. Two
raters who are each constant but differ have ``p_e = 0`` and kappa 0.

Intervals are percentile bootstraps over the pairs (``n_boot`` resamples of ``n`` pairs drawn with
replacement with ``numpy.random.default_rng(seed)``, as :func:`skillmix.metrics.summarize` draws them);
resamples where kappa is undefined are left out of kappa's interval, which is ``None`` when none is left.
"""

from __future__ import annotations

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


def _raw(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Raw agreement along the last axis (arrays of shape (..., n), n >= 1)."""
    return (x == y).mean(axis=-1)


def _kappa(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cohen's kappa along the last axis; NaN where it is undefined (p_e = 1)."""
    p_o = (x == y).mean(axis=-1)
    p_a, p_b = x.mean(axis=-1), y.mean(axis=-1)
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
    return _value(_raw(x, y)) if x.size else None


def cohen_kappa(a: Any, b: Any) -> float | None:
    """Cohen's kappa of the pairs; None without a pair or when undefined (see the module docstring)."""
    x, y = paired(a, b)
    return _value(_kappa(x, y)) if x.size else None


def bootstrap_intervals(
    a: Any, b: Any, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals ``{"raw": [low, high], "kappa": [low, high]}`` (None when undefined)."""
    x, y = paired(a, b)
    if not x.size or n_boot < 1:
        return {"raw": None, "kappa": None}
    rng = np.random.default_rng(seed)
    index = rng.integers(0, x.size, size=(n_boot, x.size))
    alpha = (1 - confidence) / 2
    out: dict[str, list[float] | None] = {}
    for name, values in (("raw", _raw(x[index], y[index])), ("kappa", _kappa(x[index], y[index]))):
        values = values[~np.isnan(values)]
        out[name] = [float(q) for q in np.quantile(values, [alpha, 1 - alpha])] if values.size else None
    return out


def agreement(
    a: Any, b: Any, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, Any]:
    """``{n, raw, raw_ci, kappa, kappa_ci}`` for two raters of the same items (JSON-ready)."""
    x, y = paired(a, b)
    intervals = bootstrap_intervals(x, y, n_boot, confidence, seed)
    return {
        "n": int(x.size),
        "raw": raw_agreement(x, y),
        "raw_ci": intervals["raw"],
        "kappa": cohen_kappa(x, y),
        "kappa_ci": intervals["kappa"],
    }


def proportion(values: Any, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = 0) -> dict:
    """``{n, share, ci}``: the mean of 0/1 values (NaN left out) with its percentile bootstrap interval."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[~np.isnan(v)]
    if not v.size:
        return {"n": 0, "share": None, "ci": None}
    summary = summarize(v, n_bootstrap=n_boot, confidence=confidence, seed=seed)
    return {"n": int(v.size), "share": float(summary.mean), "ci": [summary.ci_low, summary.ci_high]}
