"""Each metric and each aggregation step on small arrays computed by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from skillmix.metrics import (
    aggregate,
    majority_vote,
    metric_values,
    paired_bootstrap,
    paired_permutation_p,
    score,
    summarize,
)
from skillmix.rules import ScoringRules

NAN = float("nan")
PLAIN = ScoringRules(length_override=False, name_penalty=False, unparseable="zero")  # the vote alone
LENGTH = replace(PLAIN, length_override=True)
NAMES = replace(PLAIN, name_penalty=True)
BOTH = replace(PLAIN, length_override=True, name_penalty=True)


@pytest.mark.parametrize(
    ("points", "full", "all_skills", "fraction"),
    [
        ([1, 1, 1, 1, 1], 1, 1, 1.0),
        ([1, 1, 1, 1, 0], 0, 1, 0.0),  # all skills + 2 of 3 others; fraction needs all three
        ([1, 0, 1, 1, 1], 0, 0, 0.5),
        ([1, 1, 0, 0, 1], 0, 0, 0.0),  # only 1 of the 3 other points
        ([0, 0, 1, 1, 1], 0, 0, 0.0),
        ([1, 1, 0, 1, 1], 0, 1, 0.0),
    ],
)
def test_score_one_decided_text(points, full, all_skills, fraction):
    expected = {"full_marks": full, "all_skills": all_skills, "skill_fraction": fraction}
    assert score(points, 2, PLAIN) == expected


def test_skill_fraction_k3():
    assert score([1, 0, 1, 1, 1, 1], 3, PLAIN)["skill_fraction"] == pytest.approx(2 / 3)


def test_majority_vote_strict_and_missing_runs():
    runs = [[1, 1, 1, 1, 1], [1, 0, 1, 1, 0], [0, 0, 1, 1, 1]]
    assert majority_vote(runs).tolist() == [1, 0, 1, 1, 1]
    assert majority_vote([[1, 1, 1, 1], [0, 0, 0, 0]]).tolist() == [0, 0, 0, 0]  # a tie earns 0
    one_missing = [[1, 1, 1, 1], [NAN] * 4, [1, 0, 1, 1]]
    assert majority_vote(one_missing).tolist() == [1, 0, 1, 1]
    assert majority_vote([[1, 1, 1, 1], [-1] * 4, [1, 0, 1, 1]]).tolist() == [1, 0, 1, 1]  # -1 = unparsed
    assert np.isnan(majority_vote([[NAN] * 4, [NAN] * 4])).all()


def test_score_votes_runs():
    runs = [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0]]
    assert score(runs, 1, PLAIN)["full_marks"] == 1


def test_length_override_and_name_penalty():
    # k=2: at most one sentence. The grader gave the length point, but the text has two sentences.
    text = "The stitch held. The metaphor of a seam was lost on nobody."
    got = score([1, 1, 1, 1, 1], 2, LENGTH, text=text, skills=["metaphor", "red herring"])
    assert got["full_marks"] == 0 and got["all_skills"] == 1
    # The grader withheld the length point of a one-sentence text: the counter gives it back.
    assert score([1, 1, 1, 1, 0], 2, LENGTH, text="One line only.")["full_marks"] == 1
    # Naming a skill costs its point.
    named = score([1, 1, 1, 1, 1], 2, NAMES, text="A metaphor.", skills=["metaphor", "red herring"])
    assert named == {"full_marks": 0, "all_skills": 0, "skill_fraction": 0.5}
    with pytest.raises(ValueError, match="name_penalty needs the 2 skills"):
        score([1, 1, 1, 1, 1], 2, NAMES, text="x")


def test_metric_values_shape_and_missing():
    decided = np.array([[[1, 1, 1, 1], [NAN, NAN, NAN, NAN]]])
    values = metric_values(decided, 1)
    assert values.shape == (1, 2, 3)
    assert values[0, 0].tolist() == [1, 1, 1] and np.isnan(values[0, 1]).all()


def build_example():
    """k=1, 2 combinations x 2 generations x 3 grader runs x 4 points."""
    c0 = [
        [[1, 1, 1, 1]] * 3,  # full marks
        [[0, 1, 1, 1]] * 3,  # nothing
    ]
    c1 = [
        [[1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]],  # vote [1,1,1,0] -> all skills only
        [[0, 1, 1, 1]] * 3,
    ]
    return np.array([c0, c1], dtype=float)


def test_aggregate_max_over_generations_then_mean():
    result = aggregate(build_example(), 1, PLAIN, n_bootstrap=200)
    assert result.n == 2 and result.excluded == 0
    assert result.per_combination.tolist() == [[1, 1, 1], [0, 1, 0]]
    assert result["full_marks"].mean == 0.5
    assert result["full_marks"].stderr == pytest.approx(0.5)  # std([1,0], ddof=1)=0.7071 / sqrt(2)
    assert result["all_skills"].mean == 1.0 and result["all_skills"].stderr == 0.0
    assert result["all_skills"].ci_low == result["all_skills"].ci_high == 1.0
    assert 0.0 <= result["full_marks"].ci_low <= 0.5 <= result["full_marks"].ci_high <= 1.0
    assert result.to_dict()["skill_fraction"]["mean"] == 0.5


def test_aggregate_excludes_ungraded_combinations():
    points = build_example()
    points[1] = NAN  # combination 1 never got a usable grade
    result = aggregate(points, 1, PLAIN)
    assert result.n == 1 and result.excluded == 1
    assert result["full_marks"].mean == 1.0 and math.isnan(result["full_marks"].stderr)
    points = build_example()
    points[0, 0] = NAN  # only the first generation of combination 0 is ungraded: max over the other
    assert aggregate(points, 1, PLAIN).per_combination[0].tolist() == [0, 0, 0]


def test_aggregate_with_text_checks():
    points = np.ones((1, 2, 3, 5))  # k=2, grader gave everything
    texts = [["Two sentences. Too long.", "A red herring in one sentence."]]
    skills = [["metaphor", "red herring"]]
    plain = aggregate(points, 2, PLAIN)
    assert plain["full_marks"].mean == 1.0
    length_only = aggregate(points, 2, LENGTH, texts=texts)
    assert length_only["full_marks"].mean == 1.0  # the second generation still has full marks
    both = aggregate(points, 2, BOTH, texts=texts, skills=skills)
    assert both.per_combination.tolist() == [[0, 1, 0.5]]
    with pytest.raises(ValueError, match="need the texts"):
        aggregate(points, 2, LENGTH)


def test_bootstrap_interval_is_pinned_by_its_seed_and_narrows_with_confidence():
    values = [0, 1 / 3, 2 / 3, 1, 1, 0.5, 0.25]
    pinned = summarize(values, n_bootstrap=500, seed=1)
    assert pinned.mean == pytest.approx(3.75 / 7)
    assert (pinned.ci_low, pinned.ci_high) == pytest.approx(
        (0.2738095238095238, 0.7857142857142857), abs=1e-12
    )
    again = summarize(list(values), n_bootstrap=500, seed=1)  # a fresh call, a fresh list: the same draw
    assert (again.ci_low, again.ci_high) == (pinned.ci_low, pinned.ci_high)
    other = summarize(values, n_bootstrap=500, seed=2)
    assert (other.ci_low, other.ci_high) != (pinned.ci_low, pinned.ci_high)
    assert other.ci_low == pytest.approx(0.2857142857142857, abs=1e-12)
    narrow = summarize(values, n_bootstrap=500, seed=1, confidence=0.5)
    assert pinned.ci_low < narrow.ci_low < narrow.mean < narrow.ci_high < pinned.ci_high
    assert (narrow.ci_low, narrow.ci_high) == pytest.approx(
        (0.4404761904761905, 0.6190476190476192), abs=1e-12
    )
    constant = summarize([0.5] * 6, n_bootstrap=500, seed=3)
    assert constant.ci_low == constant.ci_high == 0.5 and constant.stderr == 0.0


def test_summarize_and_bad_input():
    s = summarize([1, 0, 0, 1], n_bootstrap=1000, seed=1)
    assert s.mean == 0.5 and s.stderr == pytest.approx(np.std([1, 0, 0, 1], ddof=1) / 2)
    assert s.ci_low < 0.5 < s.ci_high
    with pytest.raises(ValueError, match="expected k\\+3 = 5 points"):
        score([1, 1, 1, 1], 2, PLAIN)
    with pytest.raises(ValueError, match="must be 0, 1 or missing"):
        score([1, 1, 1, 2], 1, PLAIN)
    with pytest.raises(ValueError, match="combinations, generations, grader_runs"):
        aggregate(np.ones((2, 4)), 1, PLAIN)


# ---------------------------------------------------------------------- paired comparison


def test_paired_statistics_of_identical_runs():
    same = [0.0, 0.5, 1.0, 1.0, 0.0]
    interval = paired_bootstrap(same, same)
    assert (interval.n, interval.difference, interval.ci_low, interval.ci_high) == (5, 0.0, 0.0, 0.0)
    test = paired_permutation_p(same, same)
    assert (test.p, test.exact, test.permutations) == (1.0, True, 1)  # no nonzero difference: one pattern


def test_paired_permutation_p_by_enumeration():
    # differences [1, 1, 1, 0]: the 0 cannot change sign; of the 2**3 = 8 sign patterns of the three 1s,
    # only +++ and --- reach |sum| >= 3: p = 2/8 (= 4/16 counting the 0's two signs)
    test = paired_permutation_p([0, 0, 0, 1], [1, 1, 1, 1])
    assert (test.p, test.exact, test.permutations) == (2 / 8, True, 8)
    # differences [2, -1, 1], observed |sum| 2: sums +-2 +-1 +-1 are 4 2 2 0 0 -2 -2 -4, six reach 2
    assert paired_permutation_p([0, 0, 0], [2, -1, 1]).p == 6 / 8
    assert paired_permutation_p([1, 1, 1], [0, 0, 0]).p == paired_permutation_p([0, 0, 0], [1, 1, 1]).p
    five = paired_permutation_p(np.zeros(5), np.ones(5))
    assert five.p == 2 / 32 and five.p > 0.05  # five pairs can never reach significance at 0.05


def test_paired_permutation_p_by_monte_carlo():
    ones = paired_permutation_p(np.zeros(20), np.ones(20))  # 20 nonzero differences > 16: drawn
    assert not ones.exact and ones.permutations == 10000
    assert ones.p == 1 / 10001  # exact p is 2 / 2**20: no draw of 10000 hits it (this seed)
    rng = np.random.default_rng(3)
    d = rng.normal(0.3, 1.0, 17)
    signs = 1 - 2 * ((np.arange(2**17)[:, None] >> np.arange(17)) & 1)
    exact = float(np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-9))  # every pattern, by brute force
    drawn = paired_permutation_p(np.zeros(17), d, n_permutations=20000, seed=1)
    assert not drawn.exact and drawn.p == pytest.approx(exact, abs=0.015)
    assert paired_permutation_p(np.zeros(17), d, exact_up_to=17).p == pytest.approx(exact)
    assert paired_permutation_p(np.zeros(17), d, seed=1) == paired_permutation_p(np.zeros(17), d, seed=1)


def test_paired_bootstrap_interval_by_hand():
    # differences [1, 1, 1, 0]: a resample's mean is (ones drawn) / 4, ones ~ Binomial(4, 3/4).
    # P(mean 0) = 1/256 < 2.5% < P(mean <= 0.25) = 13/256 and P(mean 1) = 81/256 > 2.5%: [0.25, 1.0]
    found = paired_bootstrap([0, 0, 0, 1], [1, 1, 1, 1])
    assert (found.n, found.difference, found.ci_low, found.ci_high) == (4, 0.75, 0.25, 1.0)
    rng = np.random.default_rng(0)  # the documented procedure: 1000 resamples of the pairs, seed 0
    d = np.array([1.0, 1.0, 1.0, 0.0])
    means = d[rng.integers(0, 4, size=(1000, 4))].mean(axis=1)
    assert [found.ci_low, found.ci_high] == np.quantile(means, [0.025, 0.975]).tolist()
    constant = paired_bootstrap([0.0, 0.25, 0.5], [0.5, 0.75, 1.0])
    assert (constant.difference, constant.ci_low, constant.ci_high) == (0.5, 0.5, 0.5)
    one = paired_bootstrap([0.0], [1.0])
    assert (one.n, one.difference, one.ci_low, one.ci_high) == (1, 1.0, 1.0, 1.0)
    none = paired_bootstrap([], [])
    assert none.n == 0 and math.isnan(none.difference) and math.isnan(none.ci_low)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([0, 1], [1])
    with pytest.raises(ValueError, match="NaN-free"):
        paired_permutation_p([0, NAN], [1, 1])
