"""Power before paying: the smallest difference each check of a finding's family detects at 80% power.

``--plan`` prints, for every check (student, contrast, setting, k), the **minimum detectable difference**
(MDD) in Full Marks at the evaluation's n: the smallest improvement b - a that the verdict rule of
:mod:`skillmix.experiment.findings` calls "supports" (paired 95% interval above 0 and permutation p < 0.05)
in at least 80% of simulated evaluations. It simulates the rule itself, its statistics computed from the
counts of wins and losses (:func:`_supports`), on paired binary outcomes:

* the earlier set's rate ``p_a``: the paper's published figure for it at that setting and k where the
  experiment file has one; else the base model's published figure (the earlier set is at least as good, so
  this is the harder case); else :data:`ASSUMED_RATE`. Each line says which;
* the share of discordant pairs is an assumption, printed with the figure: of the combinations the
  earlier model passes, the later one fails :data:`ASSUMED_REVERSAL` (so wins = d + r p_a, losses = r p_a);
* ``SIMULATIONS`` evaluations per difference, seeded: the figure is reproducible, to about 0.01.

A line warns when the MDD exceeds the effect the paper reports for that check (published b - a, or b - base),
so that an underpowered evaluation is seen before it is paid for.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from skillmix.experiment.findings import ALPHA

POWER = 0.8
SIMULATIONS = 200
ASSUMED_RATE = 0.05  # the earlier set's Full Marks when the file publishes nothing for it
ASSUMED_REVERSAL = 0.3  # of the earlier model's passes, the share the later model fails
GRID = tuple(round(0.01 * i, 2) for i in range(1, 61))


@functools.cache
def _supports(wins: int, losses: int, n: int) -> bool:
    """The rule's verdict on one check whose n pairs hold ``wins`` and ``losses`` (the rest ties), from the
    counts alone: the sign-flip p exactly (what :func:`paired_permutation_p` enumerates up to 16 nonzero
    differences and estimates from 10,000 patterns beyond) and the percentile bootstrap interval of the
    mean difference from 1,000 resamples of the counts (resampling n pairs draws multinomial counts: the
    same distribution as :func:`paired_bootstrap`'s). tests/test_power.py checks both against the rule."""
    if wins <= losses or sign_flip_p(wins, losses) >= ALPHA:
        return False
    rng = np.random.default_rng(0)
    counts = rng.multinomial(n, [wins / n, losses / n, 1 - (wins + losses) / n], size=1000)
    low = float(np.quantile((counts[:, 0] - counts[:, 1]) / n, (1 - 0.95) / 2))
    return low > 0


def sign_flip_p(wins: int, losses: int) -> float:
    """The exact two-sided sign-flip p of ``wins`` +1 and ``losses`` -1 differences."""
    m, observed = wins + losses, abs(wins - losses)
    hits = sum(math.comb(m, x) for x in range(m + 1) if abs(2 * x - m) >= observed)
    return hits / 2**m


def detection_power(n: int, rate: float, difference: float, seed: int = 0) -> float:
    """The share of ``SIMULATIONS`` evaluations of ``n`` combinations in which the rule supports b > a, when
    a passes at ``rate`` and b at ``rate + difference`` (discordance as the module docstring assumes)."""
    losses = ASSUMED_REVERSAL * rate
    wins = difference + losses
    if wins + losses > 1 or rate + difference > 1:
        return float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [wins, losses, 1 - wins - losses], size=SIMULATIONS)
    return float(np.mean([_supports(int(w), int(lo), n) for w, lo, _ in draws]))


@functools.cache
def minimum_detectable(n: int, rate: float) -> float | None:
    """The smallest difference on :data:`GRID` detected with :data:`POWER` (None: none up to 0.6)."""
    low, high = 0, len(GRID) - 1
    if not detection_power(n, rate, GRID[high]) >= POWER:
        return None
    while low < high:  # power grows with the difference: a binary search over the grid
        middle = (low + high) // 2
        if detection_power(n, rate, GRID[middle]) >= POWER:
            high = middle
        else:
            low = middle + 1
    return GRID[low]


def power_lines(config: Any, n: int) -> list[str]:
    """The plan's lines: each check of each finding's family, for every student that has its sets."""
    lines = []
    for finding in config.finding_list():
        for student in config.students:
            sets = config.sets_of(student)
            for contrast in finding.family:
                if contrast.a not in sets or contrast.b not in sets:
                    continue
                for setting, k in contrast.checks():
                    lines.append(_line(config, finding.name, student, contrast, setting, k, n))
    return lines


def _line(config: Any, finding: str, student: str, contrast: Any, setting: str, k: int, n: int) -> str:
    rate, source = _rate(config, student, contrast.a, setting, k)
    mdd = minimum_detectable(n, rate)
    reported = _reported(config, student, contrast, setting, k)
    head = (
        f"  finding {finding} {student} {config.label(contrast.b)} - {config.label(contrast.a)} "
        f"{setting} k={k}, n={n}:"
    )
    shown = f"more than {GRID[-1]:.2f}" if mdd is None else f"{mdd:.2f}"
    text = f"{head} detects {shown} at {POWER:.0%} power ({contrast.a} at {rate:.2f}, {source}; "
    text += f"{ASSUMED_REVERSAL:.0%} of its passes lost, assumed)"
    if reported is not None:
        text += f"; the paper reports {reported:+.2f}"
        if mdd is None or mdd > reported:
            text += ": WARNING: this n cannot detect it (raise evaluation.settings.n)"
    return text


def _published(config: Any, student: str, model: str, setting: str, k: int) -> float | None:
    spec = config.students[student]
    found = [p.value for p in spec.published if (p.model, p.setting, p.k, p.metric) == (model, setting, k,
             "full_marks")]  # fmt: skip
    return found[0] if found else None


def _rate(config: Any, student: str, earlier: str, setting: str, k: int) -> tuple[float, str]:
    value = _published(config, student, earlier, setting, k)
    if value is not None:
        return value, "published"
    base = _published(config, student, "base", setting, k)
    if base is not None:
        return base, "the base model's published rate"
    return ASSUMED_RATE, "assumed"


def _reported(config: Any, student: str, contrast: Any, setting: str, k: int) -> float | None:
    later = _published(config, student, contrast.b, setting, k)
    earlier = _published(config, student, contrast.a, setting, k)
    if earlier is None:
        earlier = _published(config, student, "base", setting, k)
    return None if later is None or earlier is None else later - earlier
