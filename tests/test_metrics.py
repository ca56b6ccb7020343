"""Each metric and each aggregation step on small arrays computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from skillmix.metrics import aggregate, majority_vote, metric_values, score, summarize

NAN = float("nan")


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
    assert score(points, k=2) == {"full_marks": full, "all_skills": all_skills, "skill_fraction": fraction}


def test_skill_fraction_k3():
    assert score([1, 0, 1, 1, 1, 1], k=3)["skill_fraction"] == pytest.approx(2 / 3)


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
    assert score(runs, k=1)["full_marks"] == 1


def test_length_override_and_name_penalty():
    # k=2: at most one sentence. The grader gave the length point, but the text has two sentences.
    text = "The stitch held. The metaphor of a seam was lost on nobody."
    got = score([1, 1, 1, 1, 1], 2, text=text, skills=["metaphor", "red herring"], length_override=True)
    assert got["full_marks"] == 0 and got["all_skills"] == 1
    # The grader withheld the length point of a one-sentence text: the counter gives it back.
    assert score([1, 1, 1, 1, 0], 2, text="One line only.", length_override=True)["full_marks"] == 1
    # Naming a skill costs its point.
    named = score(
        [1, 1, 1, 1, 1], 2, text="A metaphor.", skills=["metaphor", "red herring"], name_penalty=True
    )
    assert named == {"full_marks": 0, "all_skills": 0, "skill_fraction": 0.5}
    with pytest.raises(ValueError, match="name_penalty needs the 2 skills"):
        score([1, 1, 1, 1, 1], 2, text="x", name_penalty=True)


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
    result = aggregate(build_example(), k=1, n_bootstrap=200)
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
    result = aggregate(points, k=1)
    assert result.n == 1 and result.excluded == 1
    assert result["full_marks"].mean == 1.0 and math.isnan(result["full_marks"].stderr)
    points = build_example()
    points[0, 0] = NAN  # only the first generation of combination 0 is ungraded: max over the other
    assert aggregate(points, k=1).per_combination[0].tolist() == [0, 0, 0]


def test_aggregate_with_text_checks():
    points = np.ones((1, 2, 3, 5))  # k=2, grader gave everything
    texts = [["Two sentences. Too long.", "A red herring in one sentence."]]
    skills = [["metaphor", "red herring"]]
    plain = aggregate(points, 2)
    assert plain["full_marks"].mean == 1.0
    length_only = aggregate(points, 2, texts=texts, length_override=True)
    assert length_only["full_marks"].mean == 1.0  # the second generation still has full marks
    both = aggregate(points, 2, texts=texts, skills=skills, length_override=True, name_penalty=True)
    assert both.per_combination.tolist() == [[0, 1, 0.5]]
    with pytest.raises(ValueError, match="need the texts"):
        aggregate(points, 2, length_override=True)


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
        score([1, 1, 1, 1], k=2)
    with pytest.raises(ValueError, match="must be 0, 1 or missing"):
        score([1, 1, 1, 2], k=1)
    with pytest.raises(ValueError, match="combinations, generations, grader_runs"):
        aggregate(np.ones((2, 4)), k=1)
