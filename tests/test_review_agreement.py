"""skillmix.review.agreement against hand computations, kappa's degenerate cases included."""

from __future__ import annotations

import numpy as np
import pytest

from skillmix.metrics import summarize
from skillmix.review.agreement import (
    agreement,
    bootstrap_intervals,
    cohen_kappa,
    paired,
    proportion,
    raw_agreement,
)

NAN = float("nan")


def test_kappa_of_a_partial_agreement():
    # p_o = 3/4; p_a = 1/2, p_b = 1/4; p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1/2)
    a, b = [1, 1, 0, 0], [1, 0, 0, 0]
    assert raw_agreement(a, b) == 0.75
    assert cohen_kappa(a, b) == pytest.approx(0.5)
    assert cohen_kappa(b, a) == pytest.approx(0.5)  # symmetric in the raters


def test_kappa_of_another_hand_example():
    # 10 items: both yes 4, a yes / b no 1, a no / b yes 2, both no 3
    a = [1] * 4 + [1] + [0] * 2 + [0] * 3
    b = [1] * 4 + [0] + [1] * 2 + [0] * 3
    p_o, p_a, p_b = 7 / 10, 5 / 10, 6 / 10
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)  # 0.30 + 0.20 = 0.50
    assert raw_agreement(a, b) == pytest.approx(p_o)
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e)) == pytest.approx(0.4)


def test_perfect_and_opposite_raters():
    assert (raw_agreement([1, 0, 1], [1, 0, 1]), cohen_kappa([1, 0, 1], [1, 0, 1])) == (1.0, 1.0)
    # p_o = 0, p_e = 1/2: kappa = -1
    assert (raw_agreement([1, 0], [0, 1]), cohen_kappa([1, 0], [0, 1])) == (0.0, -1.0)


def test_degenerate_kappa():
    # both raters give one and the same value everywhere: p_e = 1, kappa = 0/0 is undefined
    assert raw_agreement([1, 1, 1], [1, 1, 1]) == 1.0 and cohen_kappa([1, 1, 1], [1, 1, 1]) is None
    assert cohen_kappa([0, 0], [0, 0]) is None
    # each constant, but different: p_o = 0, p_e = 1 * 0 + 0 * 1 = 0, kappa = 0
    assert raw_agreement([1, 1], [0, 0]) == 0.0 and cohen_kappa([1, 1], [0, 0]) == 0.0
    # one constant rater: p_o = 3/4, p_a = 1, p_b = 3/4, p_e = 3/4, kappa = 0 whatever the agreement
    assert cohen_kappa([1, 1, 1, 1], [1, 1, 1, 0]) == 0.0
    # no pair at all
    assert raw_agreement([], []) is None and cohen_kappa([], []) is None
    assert agreement([NAN], [1]) == {"n": 0, "raw": None, "raw_ci": None, "kappa": None, "kappa_ci": None}


def test_unrated_items_are_left_out():
    a, b = [1, NAN, 0, 1], [1, 1, NAN, 0]  # pairs (1, 1) and (1, 0)
    x, y = paired(a, b)
    assert x.tolist() == [1.0, 1.0] and y.tolist() == [1.0, 0.0]
    assert raw_agreement(a, b) == 0.5 and cohen_kappa(a, b) == 0.0  # p_a = 1: p_e = p_b = 1/2


def test_bad_ratings_are_refused():
    with pytest.raises(ValueError, match="same items"):
        raw_agreement([1, 0], [1])
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        cohen_kappa([1, 2], [1, 0])


def test_bootstrap_intervals_by_hand():
    a, b = [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]
    index = np.random.default_rng(7).integers(0, 6, size=(200, 6))
    raws, kappas = [], []
    for row in index:  # one resample at a time, with the scalar functions
        x, y = [a[i] for i in row], [b[i] for i in row]
        raws.append(raw_agreement(x, y))
        if (kappa := cohen_kappa(x, y)) is not None:
            kappas.append(kappa)
    intervals = bootstrap_intervals(a, b, n_boot=200, seed=7)
    assert intervals["raw"] == pytest.approx(list(np.quantile(raws, [0.025, 0.975])))
    assert intervals["kappa"] == pytest.approx(list(np.quantile(kappas, [0.025, 0.975])))
    full = agreement(a, b, n_boot=200, seed=7)
    assert full["n"] == 6 and full["raw"] == pytest.approx(4 / 6)
    assert full["raw_ci"][0] <= full["raw"] <= full["raw_ci"][1]
    assert full["kappa_ci"][0] <= full["kappa"] <= full["kappa_ci"][1]
    assert agreement(a, b, seed=1) == agreement(a, b, seed=1)  # seeded


def test_bootstrap_of_degenerate_data():
    same = bootstrap_intervals([1, 0, 1, 0], [1, 0, 1, 0], n_boot=100)
    assert same == {"raw": [1.0, 1.0], "kappa": [1.0, 1.0]}  # constant resamples are left out of kappa's
    constant = bootstrap_intervals([1, 1, 1], [1, 1, 1], n_boot=100)
    assert constant == {"raw": [1.0, 1.0], "kappa": None}  # kappa undefined in every resample
    assert bootstrap_intervals([], []) == {"raw": None, "kappa": None}


def test_proportion_is_the_metrics_summary():
    values = [1, 1, 0, NAN, 1, 0]
    result = proportion(values, n_boot=300, seed=3)
    reference = summarize([1, 1, 0, 1, 0], n_bootstrap=300, seed=3)
    assert result == {"n": 5, "share": 0.6, "ci": [reference.ci_low, reference.ci_high]}
    assert proportion([NAN]) == {"n": 0, "share": None, "ci": None}
    assert proportion([1]) == {"n": 1, "share": 1.0, "ci": [1.0, 1.0]}
