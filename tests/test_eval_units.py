"""The evaluation's configuration layers, its student kinds, its draw, and scoring from samples alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from skillmix.config import ConfigError
from skillmix.evaluation.config import EvalConfig, StudentSettings, build_eval_config
from skillmix.evaluation.roles import student_kind
from skillmix.evaluation.run import expand
from skillmix.evaluation.score import errored_ids, score_samples
from skillmix.evaluation.sets import eval_sets
from skillmix.hub_ids import split_revision
from skillmix.rules import ScoringRules

RULES = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")


def test_a_dataset_preset_lends_its_judge_and_protocol_and_flags_win(tmp_path):
    preset = tmp_path / "dataset.yaml"
    preset.write_text(
        "teacher: {model: big-teacher, base_url: 'http://teacher:1/v1'}\n"
        "grader_runs: 5\nn_per_k: {2: 10}\nk: [2]\nclient: {concurrency: 7}\n"
    )
    config = build_eval_config(str(preset), {"student": {"model": "s"}})
    # the judge left unnamed in the preset is its teacher, model and server
    assert (config.judge.model, config.judge.base_url) == ("big-teacher", "http://teacher:1/v1")
    assert config.grader_runs == 5 and config.client.concurrency == 7
    assert config.k == [2, 3, 4, 5] and config.n == 100  # the dataset's sizes are not the evaluation's
    config = build_eval_config(str(preset), {"grader_runs": 3, "judge": {"model": "other"}})
    assert config.grader_runs == 3 and config.judge.model == "other"


def test_an_eval_yaml_is_read_whole_and_strictly(tmp_path):
    good = tmp_path / "eval.yaml"
    good.write_text("judge: {model: j}\nk: 3,4\nsetting: held-out\nn: 7\ngenerations: 2\n")
    config = build_eval_config(str(good))
    assert (config.k, config.setting, config.n, config.generations) == ([3, 4], ["held-out"], 7, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("judge: {model: j}\ngenerashuns: 2\n")
    with pytest.raises(ConfigError, match="generashuns"):
        build_eval_config(str(bad))


def test_settings_are_checked_and_put_in_the_papers_order():
    assert EvalConfig(setting="all,train").setting == ["train", "all"]
    with pytest.raises(ValueError, match="unknown setting 'sideways'"):
        EvalConfig(setting="train,sideways")
    with pytest.raises(ConfigError, match="never grades itself"):
        build_eval_config(None, {"student": {"model": "s"}})


@pytest.mark.parametrize(
    ("model", "base_url", "kind"),
    [
        ("gpt-4o-mini", None, "api"),
        ("org/model", "http://127.0.0.1:8000/v1", "api"),  # served elsewhere: the URL says so
        ("org/model@v2", None, "local"),
        (None, None, "embedded"),
    ],
)
def test_the_kind_of_student(model, base_url, kind, tmp_path):
    assert student_kind(StudentSettings(model=model, base_url=base_url)) == kind
    assert student_kind(StudentSettings(model=str(tmp_path))) == "local"  # an existing folder


def test_the_draw_is_the_one_a_release_publishes(builtin):
    from skillmix.release.evalsets import build_eval_sets

    split = builtin.split(0)
    published = build_eval_sets(builtin, split, n=4, ks=(3,), settings=("held-out",), seed=0)["eval-held-out"]
    drawn = eval_sets(builtin, split, ["held-out"], [3], 4, 0)[("held-out", 3)]
    assert [c.id for c in drawn] == [row["id"] for row in published]
    assert split_revision("org/data@v1.0.0") == ("org/data", "v1.0.0") and split_revision("org/d") == (
        "org/d",
        None,
    )


def test_generations_are_rows_with_their_own_ids_interleaved_over_settings(builtin):
    split = builtin.split(0)
    sets = eval_sets(builtin, split, ["train", "held-out"], [2], 2, 0)
    rows = expand(sets, 3)
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert [r["setting"] for r in rows[:2]] == ["train", "held-out"]
    assert sorted(r["generation"] for r in rows if r["combination"] == rows[0]["combination"]) == [0, 1, 2]


def sample(combo: str, g: int, runs: list, status: str = "ok", answer: str = "One short line.") -> dict:
    return {
        "setting": "train", "k": 2, "combination": combo, "generation": g, "skills": ["a", "b"],
        "answer": answer if status == "ok" else None, "round1_status": status, "round2_status": status,
        "grader_points": [r if isinstance(r, list) else None for r in runs],
        "grader_status": ["ok" if isinstance(r, list) else r for r in runs],
    }  # fmt: skip


def test_scoring_from_samples_follows_the_rules_by_hand():
    full, miss = [1, 1, 1, 1, 1], [0, 1, 1, 1, 1]
    samples = [
        sample("x", 0, [full, full, "unparseable"]),  # x: full marks
        sample("y", 0, [miss, miss, full]),  # y: skill fraction 1/2
        sample("y", 1, [], status="api_error"),  # the infrastructure's: left out (not a 0), y keeps 1/2
        sample("z", 0, ["unparseable"] * 3),  # z: no vote at all: 0 by default, left out with "drop"
        sample("z", 1, [], status="budget"),  # never started: left out
        sample("v", 0, [], status="refused"),  # the student's doing: earns nothing
    ]
    [r] = score_samples(samples, runs=3, generations=2, rules=RULES)
    counts = ("n", "excluded", "failed_generations", "errored_generations", "not_run", "ungraded_generations")
    assert tuple(r[key] for key in counts) == (4, 0, 1, 1, 1, 1)
    assert r["unparseable_grades"] == 4 and r["judge_errors"] == 0
    assert r["full_marks"]["mean"] == pytest.approx(1 / 4)  # x 1, y 0, z 0, v 0
    assert r["skill_fraction"]["mean"] == pytest.approx(1.5 / 4)  # x 1, y 1/2, z 0, v 0
    [dropped] = score_samples(samples, 3, 2, replace(RULES, unparseable="drop"))
    assert (dropped["n"], dropped["excluded"], dropped["ungraded_generations"]) == (3, 1, 1)
    assert dropped["full_marks"]["mean"] == pytest.approx(1 / 3)  # z left out: x 1, y 0, v 0
    assert dropped["skill_fraction"]["mean"] == pytest.approx(1.5 / 3)
    assert errored_ids([{**s, "id": f"{s['combination']}:g{s['generation']}"} for s in samples]) == ["y:g1"]
    # a named skill earns nothing under the penalty, and everything without it
    named = [sample("w", 0, [full] * 3, answer="A line that says a outright.")]
    [penalised] = score_samples(named, 3, 1, RULES)
    [lenient] = score_samples(named, 3, 1, replace(RULES, name_penalty=False))
    assert penalised["full_marks"]["mean"] == 0.0 and lenient["full_marks"]["mean"] == 1.0
