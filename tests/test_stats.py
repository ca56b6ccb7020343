"""Dataset statistics on small datasets computed by hand, and the card figures drawn from them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from skillmix.release.figures import make_figures
from skillmix.release.stats import dataset_stats, judge_vote
from skillmix.sampling import sample_combinations

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
OK3 = ["ok", "ok", "ok"]


def row(skills, topic, outcome, points=None, runs=None, statuses=None, answer="One short sentence.", **extra):
    """A row of the schema of pipelines/rows.py with the fields the statistics read."""
    k = len(skills)
    return {
        "id": f"k{k}-{'-'.join(skills)}-{topic}",
        "k": k,
        "setting": "train",
        "skills": list(skills),
        "categories": ["literary"] * k,
        "topic": topic,
        "answer": answer,
        "grader_points": runs,
        "grader_status": statuses if statuses is not None else (OK3 if runs else []),
        "points": points,
        "sentences": extra.pop("sentences", 1),
        "outcome": outcome,
        "status": extra.pop("status", "ok"),
        "failure_reason": extra.pop("failure_reason", None),
        **extra,
    }


def failed(skills, status, reason):
    return row(skills, "Sewing", "failed", answer=None, sentences=0, status=status, failure_reason=reason)


@pytest.fixture
def configs():
    """k1: 2 kept, 0 rejected; k2: 2 kept, 2 rejected; k3: 0 kept, 1 rejected; k4: failed only."""
    full4, full5 = [1, 1, 1, 1], [1, 1, 1, 1, 1]
    k1 = [
        row(["metaphor"], "Sewing", "kept", full4, [full4] * 3, answer="The needle sang its silver song."),
        row(
            ["metaphor"],
            "Dueling",
            "kept",
            full4,
            [full4] * 3,
            answer="At dawn the two rivals traded steel like bitter words.",
        ),
    ]
    k2 = [
        # R1: everyone agrees on full marks.
        row(["red herring", "aphorism"], "Knots", "kept", full5, [full5] * 3),
        # R4: the judge voted the length point 0, the sentence counter gave it back.
        row(["red herring", "modus ponens"], "Knots", "kept", full5, [[1, 1, 1, 1, 0]] * 3),
    ]
    rejected = [
        # R2: an unparseable run (which would flip skill 2 and the length if it voted) and a tie on skill 2.
        row(
            ["aphorism", "metaphor"],
            "Dueling",
            "rejected",
            [1, 0, 1, 1, 1],
            [[1, 1, 1, 1, 0], [1, 0, 1, 1, 0], [0, 1, 0, 0, 1]],
            ["ok", "ok", "unparseable"],
        ),
        # R3: a refused run with no points; the counter takes the length point, the name penalty skill 1.
        row(
            ["metaphor", "red herring"],
            "Sewing",
            "rejected",
            [0, 1, 1, 0, 0],
            [[1, 1, 1, 0, 1], [1, 1, 1, 0, 1], None],
            ["ok", "ok", "refused"],
            answer="A metaphor. Two sentences.",
            sentences=2,
        ),
        row(
            ["metaphor", "aphorism", "red herring"],
            "Knots",
            "rejected",
            [1, 1, 0, 1, 1, 1],
            [[1, 1, 0, 1, 1, 1]] * 3,
        ),
    ]
    failures = [
        failed(["metaphor", "aphorism"], "api_error", "round1: HTTP 500: server error"),
        failed(["metaphor"], "api_error", "round1: timeout"),
        failed(["metaphor"], "budget", "round2: budget of 1.00 USD spent"),
        failed(["a", "b", "c", "d"], "unparseable", "grading: no table; no table"),
        failed(["aphorism", "metaphor"], "refused", None),
    ]
    return {"k1": k1, "k2": k2, "k3": [], "rejected": rejected, "failed": failures}


def test_counts_and_acceptance(configs):
    stats = dataset_stats(configs)
    assert stats["ks"] == [1, 2, 3, 4]
    assert stats["rows"] == {"k1": 2, "k2": 2, "k3": 0, "rejected": 3, "failed": 5}
    assert stats["per_k"] == {
        "k1": {"kept": 2, "rejected": 0, "failed": 2, "graded": 2, "acceptance_rate": 1.0},
        "k2": {"kept": 2, "rejected": 2, "failed": 2, "graded": 4, "acceptance_rate": 0.5},
        "k3": {"kept": 0, "rejected": 1, "failed": 0, "graded": 1, "acceptance_rate": 0.0},
        "k4": {"kept": 0, "rejected": 0, "failed": 1, "graded": 0, "acceptance_rate": None},
    }


def test_judge_vote_ignores_runs_that_are_not_ok_and_ties_earn_zero():
    runs = [[1, 1, 1, 1, 0], [1, 0, 1, 1, 0], [0, 1, 0, 0, 1]]
    r = row(["a", "b"], "Sewing", "rejected", runs=runs, statuses=["ok", "ok", "unparseable"])
    assert judge_vote(r, 2) == [1, 0, 1, 1, 0]  # with the third run voting it would be [1, 1, 1, 1, 0]
    r = row(["a", "b"], "Sewing", "rejected", runs=runs, statuses=["ok", "ok", "ok"])
    assert judge_vote(r, 2) == [1, 1, 1, 1, 0]
    # A run of the wrong width and a run without points do not vote; no run left -> None.
    r = row(["a", "b"], "Sewing", "rejected", runs=[[1, 1, 1], None], statuses=["ok", "api_error"])
    assert judge_vote(r, 2) is None
    # A negative point is missing: two votes left, one each -> tie -> 0.
    r = row(["a"], "Sewing", "rejected", runs=[[1, 1, 1, -1], [1, 1, 1, 1], [1, 1, 1, 0]])
    assert judge_vote(r, 1) == [1, 1, 1, 0]


def test_judge_and_decided_pass_rates(configs):
    rates = dataset_stats(configs)["judge_pass_rates"]
    # k2 votes: R1 11111, R4 11110, R2 10110 (unparseable run left out, tie on skill 2), R3 11101.
    # k2 decided: R1 11111, R4 11111, R2 10111, R3 01100.
    assert rates["k2"] == {
        "n": 4,
        "skills": 7 / 8,
        "topic": 1.0,
        "sense": 0.75,
        "length": 0.5,
        "decided": {"n": 4, "skills": 6 / 8, "topic": 1.0, "sense": 0.75, "length": 0.75},
        "length_override_changed": 3,  # R4 0->1, R2 0->1, R3 1->0
    }
    assert rates["k1"] == {
        "n": 2,
        "skills": 1.0,
        "topic": 1.0,
        "sense": 1.0,
        "length": 1.0,
        "decided": {"n": 2, "skills": 1.0, "topic": 1.0, "sense": 1.0, "length": 1.0},
        "length_override_changed": 0,
    }
    assert rates["k3"]["skills"] == 2 / 3 and rates["k3"]["topic"] == 1.0  # points 110111
    assert rates["k3"]["decided"]["skills"] == 2 / 3 and rates["k3"]["length_override_changed"] == 0
    nothing = {"n": 0, "skills": None, "topic": None, "sense": None, "length": None}
    assert rates["k4"] == {**nothing, "decided": nothing, "length_override_changed": 0}


def test_skill_usage_with_catalog_zeros(configs, tiny):
    stats = dataset_stats(configs, catalog_skills=[s.name for s in tiny.skills])
    zero = {"k1": 0, "k2": 0, "k3": 0, "k4": 0}
    assert stats["skill_usage"] == {
        "metaphor": {**zero, "k1": 2},
        "red herring": {**zero, "k2": 2},
        "aphorism": {**zero, "k2": 1},
        "modus ponens": {**zero, "k2": 1},
        "spatial reasoning": zero,
        "self serving bias": zero,
    }
    assert list(stats["skill_usage"]) == [s.name for s in tiny.skills]  # catalog order
    summary = stats["skill_usage_summary"]
    assert summary["k1"] == {"min": 0, "max": 2, "mean": 2 / 6, "used": 1, "skills": 6}
    assert summary["k2"] == {"min": 0, "max": 2, "mean": 4 / 6, "used": 3, "skills": 6}
    assert summary["k3"] == {"min": 0, "max": 0, "mean": 0.0, "used": 0, "skills": 6}


def test_skill_usage_without_catalog_counts_only_skills_seen(configs):
    stats = dataset_stats(configs)
    assert list(stats["skill_usage"]) == ["aphorism", "metaphor", "modus ponens", "red herring"]
    assert stats["skill_usage_summary"]["k1"] == {"min": 0, "max": 2, "mean": 0.5, "used": 1, "skills": 4}


def test_topic_coverage_and_unused_topics(configs, tiny):
    coverage = dataset_stats(configs, catalog_topics=tiny.topics)["topic_coverage"]
    assert coverage["per_k"]["k1"] == {"distinct": 2, "counts": {"Dueling": 1, "Sewing": 1}}
    assert coverage["per_k"]["k2"] == {"distinct": 1, "counts": {"Knots": 2}}
    assert coverage["per_k"]["k3"] == {"distinct": 0, "counts": {}}
    assert coverage["distinct"] == 3
    assert coverage["unused"] == ["Beekeeping"]  # rejected and failed rows do not count as coverage
    assert dataset_stats(configs)["topic_coverage"]["unused"] is None


def test_sentence_histogram():
    kept = [
        row(["a", "b", "c"], "Sewing", "kept", sentences=2),
        row(["a", "b", "c"], "Sewing", "kept", sentences=1),
        row(["a", "b", "c"], "Sewing", "kept", sentences=2),
        # no count stored: counted from the answer
        row(["a", "b", "c"], "Sewing", "kept", sentences=None, answer="Mr. Smith sews. He is happy."),
    ]
    stats = dataset_stats({"k3": kept, "k1": []})
    assert stats["sentences"] == {"k1": {}, "k3": {"1": 1, "2": 3}}
    assert list(stats["sentences"]["k3"]) == ["1", "2"]


def test_word_statistics(configs):
    words = dataset_stats(configs)["words"]
    # k1 answers: 6 and 10 words.
    assert words["k1"] == {"n": 2, "mean": 8.0, "median": 8.0, "p10": 6.4, "p90": 9.6, "max": 10}
    assert words["k3"] == {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "max": None}
    answers = ["one two three", "one", "a b c d", "x", "five words in this\ttext"]
    kept = [row(["a"], "Sewing", "kept", answer=a) for a in answers]
    stats = dataset_stats({"k1": kept})["words"]["k1"]
    assert stats == {"n": 5, "mean": 2.8, "median": 3.0, "p10": 1.0, "p90": pytest.approx(4.6), "max": 5}
    counts = [1, 1, 3, 4, 5]
    assert stats["p90"] == pytest.approx(float(np.percentile(counts, 90)))
    assert stats["p10"] == pytest.approx(float(np.percentile(counts, 10)))


def test_score_distribution(configs):
    scores = dataset_stats(configs)["score_distribution"]
    assert scores["k1"] == {"0": 0, "1": 0, "2": 0, "3": 0, "4": 2}
    assert scores["k2"] == {"0": 0, "1": 0, "2": 1, "3": 0, "4": 1, "5": 2}
    assert scores["k3"] == {"0": 0, "1": 0, "2": 0, "3": 0, "4": 0, "5": 1, "6": 0}
    assert scores["k4"] == {str(n): 0 for n in range(8)}


def test_failures_by_reason(configs):
    failures = dataset_stats(configs)["failures"]
    assert failures == {
        "api_error: round1": 2,
        "budget: round2": 1,
        "refused": 1,
        "unparseable: grading": 1,
    }
    assert next(iter(failures)) == "api_error: round1"  # most common first


def test_empty_configs(tiny):
    stats = dataset_stats({})
    assert stats["ks"] == [] and stats["rows"] == {} and stats["per_k"] == {}
    assert stats["failures"] == {} and stats["skill_usage"] == {}
    assert stats["topic_coverage"] == {"per_k": {}, "distinct": 0, "unused": None}

    stats = dataset_stats(
        {"k2": [], "rejected": [], "failed": []},
        catalog_skills=[s.name for s in tiny.skills],
        catalog_topics=tiny.topics,
    )
    assert stats["per_k"] == {
        "k2": {"kept": 0, "rejected": 0, "failed": 0, "graded": 0, "acceptance_rate": None}
    }
    assert stats["judge_pass_rates"]["k2"]["skills"] is None
    assert stats["skill_usage"]["metaphor"] == {"k2": 0}
    assert stats["skill_usage_summary"]["k2"] == {"min": 0, "max": 0, "mean": 0.0, "used": 0, "skills": 6}
    assert stats["topic_coverage"]["unused"] == list(tiny.topics)
    assert stats["words"]["k2"]["mean"] is None
    assert stats["score_distribution"]["k2"] == {str(n): 0 for n in range(6)}


def test_only_kept_rows(configs):
    stats = dataset_stats({"k1": configs["k1"]})  # no rejected or failed config at all
    assert stats["per_k"]["k1"] == {
        "kept": 2,
        "rejected": 0,
        "failed": 0,
        "graded": 2,
        "acceptance_rate": 1.0,
    }
    assert stats["failures"] == {}


def test_stats_are_json_round_trippable(configs, tiny):
    stats = dataset_stats(configs, [s.name for s in tiny.skills], tiny.topics)
    assert json.loads(json.dumps(stats, allow_nan=False)) == stats


def test_rows_with_numpy_arrays(configs):
    """Rows read back from Parquet through pandas hold numpy arrays instead of lists."""
    as_arrays = {
        name: [
            {
                key: np.array(value, dtype=object) if isinstance(value, list) else value
                for key, value in r.items()
            }
            for r in rows
        ]
        for name, rows in configs.items()
    }
    assert dataset_stats(as_arrays) == dataset_stats(configs)


# ---- figures -------------------------------------------------------------------------------------------


def _check_png(path, min_width, min_height):
    from matplotlib.image import imread

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 1_000 < len(data) < 3_000_000
    image = imread(path)
    height, width = image.shape[:2]
    assert width >= min_width and height >= min_height
    assert width <= 2_000 and height <= 4_500
    assert image.std() > 0  # not a blank canvas
    return image


def realistic_configs(builtin):
    """Full-mark rows for k = 1, 2, 3 drawn from the built-in catalog, plus rejected k = 3 rows."""
    configs: dict[str, list[dict]] = {"rejected": [], "failed": []}
    for k, n in ((1, 60), (2, 40), (3, 30)):
        draw = sample_combinations(builtin, k, n, setting="k1" if k == 1 else "train", seed=1)
        configs[f"k{k}"] = []
        for i, combo in enumerate(draw):
            full = [1] * (k + 3)
            target = "rejected" if k == 3 and i % 3 == 0 else f"k{k}"
            points = [*full[:-2], 0, 1] if target == "rejected" else full
            configs[target].append(
                {
                    **combo.to_dict(),
                    "answer": "A stitch in time saves nine, said the tailor.",
                    "grader_points": [points] * 3,
                    "grader_status": OK3,
                    "points": points,
                    "sentences": 1,
                    "outcome": "kept" if target != "rejected" else "rejected",
                    "status": "ok",
                    "failure_reason": None,
                }
            )
    return configs


def test_figures_are_valid_pngs(configs, tiny, tmp_path):
    stats = dataset_stats(configs, [s.name for s in tiny.skills], tiny.topics)
    files = make_figures(stats, tmp_path)
    assert files == {
        "score_distribution": "figures/score_distribution.png",
        "skill_coverage": "figures/skill_coverage.png",
    }
    _check_png(tmp_path / files["score_distribution"], 600, 300)
    _check_png(tmp_path / files["skill_coverage"], 600, 250)


def test_skill_coverage_of_the_whole_catalog_is_tall_and_deterministic(builtin, tmp_path):
    stats = dataset_stats(realistic_configs(builtin), [s.name for s in builtin.skills], list(builtin.topics))
    assert len(stats["skill_usage"]) == 101
    assert stats["per_k"]["k3"]["acceptance_rate"] == pytest.approx(20 / 30)
    first = make_figures(stats, tmp_path / "a")
    second = make_figures(json.loads(json.dumps(stats)), tmp_path / "b")
    coverage = _check_png(tmp_path / "a" / first["skill_coverage"], 600, 1_500)
    assert coverage.shape[0] > 2 * coverage.shape[1]  # a tall figure, one bar per skill
    _check_png(tmp_path / "a" / first["score_distribution"], 600, 300)
    for name, rel in first.items():
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / second[name]).read_bytes(), name


def test_figures_of_an_empty_dataset(tmp_path):
    files = make_figures(dataset_stats({}), tmp_path)
    for rel in files.values():
        _check_png(tmp_path / rel, 200, 200)
