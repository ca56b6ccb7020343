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
    assert agreement([NAN], [1]) == {
        "n": 0,
        "records": 0,
        "raw": None,
        "raw_ci": None,
        "kappa": None,
        "kappa_ci": None,
    }


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


def correlated_sample(records: int = 40, items: int = 5, seed: int = 11) -> tuple[list, list, list]:
    """Records whose items move together: on a record the raters agree on every item or on none."""
    rng = np.random.default_rng(seed)
    a, b, ids = [], [], []
    for r in range(records):
        agree = rng.random() < 0.6
        for _ in range(items):
            x = float(rng.integers(0, 2))
            a.append(x)
            b.append(x if agree else 1 - x)
            ids.append(f"row-{r}")
    return a, b, ids


def test_a_record_level_interval_is_wider_on_correlated_items():
    a, b, ids = correlated_sample()
    by_item = agreement(a, b, n_boot=2000, seed=5)
    by_record = agreement(a, b, records=ids, n_boot=2000, seed=5)
    assert (by_item["raw"], by_item["n"], by_item["records"]) == (by_record["raw"], 200, 200)
    assert by_record["records"] == 40
    width = {name: f["raw_ci"][1] - f["raw_ci"][0] for name, f in (("item", by_item), ("record", by_record))}
    # 200 items as if independent vs 40 records of 5 identical verdicts: about sqrt(5) times wider
    assert width["record"] > 1.8 * width["item"]
    assert by_record["raw_ci"] == pytest.approx([0.575, 0.85])  # pinned for seed 5
    # the same draws by hand: resample the 40 records, each bringing its 5 pairs
    index = np.random.default_rng(5).integers(0, 40, size=(2000, 40))
    groups = [list(range(5 * r, 5 * r + 5)) for r in range(40)]
    raws = [np.mean([a[i] == b[i] for r in row for i in groups[r]]) for row in index]
    assert by_record["raw_ci"] == pytest.approx(list(np.quantile(raws, [0.025, 0.975])))


def test_stratum_weights_and_weighted_figures_by_hand():
    from skillmix.review.agreement import resample_counts, stratum_weights

    sample = {"r1": "A", "r2": "A", "r3": "B"}
    weights, coverage = stratum_weights(sample, {"A": 10, "B": 30, "C": 60})
    assert weights == {"r1": 5.0, "r2": 5.0, "r3": 30.0} and coverage == pytest.approx(0.4)
    with pytest.raises(ValueError, match="population lacks: D"):
        stratum_weights({"r1": "D"}, {"A": 1})
    # r1 and r2 agree, r3 does not: unweighted 2/3, weighted (5 + 5) / (5 + 5 + 30) = 1/4
    a, b, ids = [1, 0, 1], [1, 0, 0], ["r1", "r2", "r3"]
    assert agreement(a, b, records=ids, n_boot=0)["raw"] == pytest.approx(2 / 3)
    weighted = agreement(a, b, records=ids, weights=weights, n_boot=300, seed=2)
    assert weighted["raw"] == pytest.approx(0.25)
    # weighted kappa: p_o = 1/4, p_a = (5 + 30) / 40, p_b = 5 / 40
    p_a, p_b = 35 / 40, 5 / 40
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    assert weighted["kappa"] == pytest.approx((0.25 - p_e) / (1 - p_e))
    # the weighted resamples by hand: records drawn as for the unweighted figure, each keeping its weight
    index = np.random.default_rng(2).integers(0, 3, size=(300, 3))
    w = [weights[r] for r in ids]
    raws = [sum(w[i] for i in row if a[i] == b[i]) / sum(w[i] for i in row) for row in index]
    assert weighted["raw_ci"] == pytest.approx(list(np.quantile(raws, [0.025, 0.975])))
    counts = resample_counts(3, 300, seed=2)
    assert (counts.sum(axis=1) == 3).all() and counts.tolist()[0] == [
        list(index[0]).count(i) for i in range(3)
    ]
    share = proportion([1, 0, 1], weights=[5, 5, 30], n_boot=300, seed=2)
    assert share["share"] == pytest.approx(35 / 40) and share["n"] == 3
    assert share["ci"][0] <= share["share"] <= share["ci"][1]


def test_strata_of_one_record_still_have_uncertainty():
    """A review sample spread over many strata has strata of one record: the weighted interval must not
    collapse to a point (as resampling within strata would make it)."""
    from skillmix.review.agreement import stratum_weights

    ids = [f"r{i}" for i in range(8)]
    weights, _ = stratum_weights({r: f"s{i}" for i, r in enumerate(ids)}, {f"s{i}": 10 + i for i in range(8)})
    a, b = [1, 1, 0, 1, 0, 1, 1, 0], [1, 0, 0, 1, 0, 1, 0, 0]
    figure = agreement(a, b, records=ids, weights=weights, n_boot=1000, seed=0)
    assert figure["raw_ci"][1] - figure["raw_ci"][0] > 0.2
