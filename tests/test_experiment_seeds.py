"""Seeds and a second judge in an experiment, on fed results: one run per seed (its recipe's seed, its own
folder and repo), cells averaged over seeds with their spread, verdicts on the seed-averaged paired
differences, the same combinations re-graded in every evaluation, and the two judges' agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from skillmix.config import ConfigError
from skillmix.evaluation.crossjudge import agreement_of, chosen
from skillmix.evaluation.pairing import paired
from skillmix.experiment.config import build_experiment
from skillmix.experiment.contrasts import paired_contrasts, results_rows
from skillmix.experiment.launch import recipe_data
from skillmix.experiment.report import render
from skillmix.experiment.stages import stage_names
from skillmix.metrics import paired_bootstrap, paired_permutation_p
from skillmix.rules import ScoringRules

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "experiments" / "smoke-seeds.yaml"
PROTOCOL = {"grader_runs": 1, "generations": 1, "length_override": False, "name_penalty": False,
            "unparseable": "zero", "eval_set_hash": "same"}  # fmt: skip
RULES = ScoringRules(length_override=False, name_penalty=False, unparseable="zero")


def sample(combo: int, full: bool | None, k: int = 2, setting: str = "held-out") -> dict:
    """One generation of combination ``combo``: graded all 1s (Full Marks) or all 0s; None: not graded
    (its judge request failed)."""
    points = [[int(bool(full))] * (k + 3)]
    return {
        "id": f"{setting}:c{combo}:g0", "combination": f"c{combo}", "generation": 0, "setting": setting,
        "k": k, "skills": ["metaphor", "red herring"][:k], "topic": "Sewing", "answer": "A text.",
        "round1_status": "ok", "round2_status": "ok",
        "grader_status": ["ok" if full is not None else "api_error"],
        "grader_points": points if full is not None else [None],
    }  # fmt: skip


def results(full: list[int]) -> tuple[dict, list[dict]]:
    """An evaluation of 20 combinations at held-out k = 2 whose Full Marks are 1 for the ids in ``full``."""
    samples = [sample(c, c in full) for c in range(20)]
    mean = len(full) / 20
    entry = {"setting": "held-out", "k": 2, "n": 20, "full_marks": {"mean": mean, "stderr": 0.1}}
    return {"judge": {"model": "j"}, "protocol": PROTOCOL, "results": [entry]}, samples


def test_a_set_with_seeds_trains_and_evaluates_one_model_per_seed(tmp_path):
    config = build_experiment(SEEDS)
    assert config.runs() == [("tiny", "D1@seed0"), ("tiny", "D1@seed1"), ("tiny", "D123@seed0"),
                             ("tiny", "D123@seed1")]  # fmt: skip
    names = [name for name, *_ in stage_names(config)]
    assert "train/tiny/D123@seed1" in names and "eval/tiny/D123@seed1" in names
    assert "cross-judge/tiny/D1@seed0" in names and names[-2:] == ["compare", "report"]
    one = recipe_data(config, "tiny", "D123@seed1", tmp_path / "dataset")
    zero = recipe_data(config, "tiny", "D123@seed0", tmp_path / "dataset")
    assert (
        one["training"]["seed"] == 1 and one["model"]["tiny"]["seed"] == 1 and zero["training"]["seed"] == 0
    )
    assert one["data"]["datasets"] == zero["data"]["datasets"]  # the same rows: only the seed differs
    assert one["output_dir"].endswith("train/tiny--D123@seed1")
    assert config.label("D123@seed1") == "D(1,2,3) seed 1" and config.set_of("D123@seed1") == "D123"
    pushed = config.model_copy(update={"hub": config.hub.model_copy(update={"models": "org"})})
    assert pushed.repo_of("tiny", "D123@seed1") == "org/tiny-D123-seed1"  # a valid repo name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": [0, 0]}, "repeats a seed"),
        ({"seeds": []}, "seeds"),
    ],
)
def test_bad_seeds_are_refused(tmp_path, change, message):
    data = yaml.safe_load(SEEDS.read_text())
    data["training_sets"]["D1"].update(change)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        build_experiment(path)
    data = yaml.safe_load(SEEDS.read_text())
    data["training_sets"]["D1@x"] = data["training_sets"].pop("D1")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="'@' marks a seed's run"):
        build_experiment(path)


def test_cells_average_over_seeds_and_verdicts_use_seed_averaged_differences():
    config = build_experiment(SEEDS)
    runs = {
        ("tiny", "D1@seed0"): results([0]),
        ("tiny", "D1@seed1"): results([1, 2]),
        ("tiny", "D123@seed0"): results(list(range(10))),
        ("tiny", "D123@seed1"): results(list(range(4, 12))),
    }
    pairs = paired_contrasts(config, runs)
    found = pairs[("tiny", "D1", "D123")][("held-out", 2, "full_marks")]
    a = np.array([np.mean([c == 0, c in (1, 2)]) for c in range(20)], dtype=float)
    b = np.array([np.mean([c < 10, 4 <= c < 12]) for c in range(20)], dtype=float)
    assert found["seeds"] == [2, 2] and found["n"] == 20
    assert found["difference"] == pytest.approx(b.mean() - a.mean())
    assert found["ci_low"] == pytest.approx(paired_bootstrap(a, b, n_resamples=1000, seed=0).ci_low)
    assert found["p"] == pytest.approx(paired_permutation_p(a, b, exact_up_to=16, n_permutations=10000).p)
    # a combination one seed's model did not score is left out of the pairs (not averaged over fewer seeds)
    results_lost = results(list(range(4, 12)))
    results_lost[1][5] = sample(5, None)
    lost = paired_contrasts(config, {**runs, ("tiny", "D123@seed1"): results_lost})
    assert lost[("tiny", "D1", "D123")][("held-out", 2, "full_marks")]["n"] == 19
    table = results_rows(config, runs)
    (mean,) = [r for r in table if r["seed"] == "mean" and r["training_set"] == "D(1,2,3)"
               and r["metric"] == "full_marks"]  # fmt: skip
    assert mean["mean"] == pytest.approx(0.45) and mean["seed_min"] == 0.4 and mean["seed_max"] == 0.5
    assert mean["seeds"] == 2 and mean["seed_sd"] == pytest.approx(np.std([0.5, 0.4], ddof=1))
    text = render(config, table, pairs, {"findings": [], "comparisons": []}, {}, None)
    assert (
        "| tiny | D(1,2,3) seed 1 |" in text
        and "| tiny | D(1,2,3), mean of 2 seeds | 0.45 (0.40–0.50) |" in text
    )
    assert "| tiny | D(1,2,3) − D(1) | held-out | 2 | 20 | 2/2 |" in text


def test_the_same_combinations_are_regraded_in_every_evaluation():
    first, second = results([0])[1], results([3, 4])[1]
    picked = chosen(first, 5, seed=1)
    assert len(picked) == 5 and picked == chosen(second, 5, seed=1)
    assert len({frozenset(chosen(first, 5, seed=s)) for s in range(5)}) > 1  # the seed picks them
    assert chosen(first, 50, seed=1) == {f"c{c}" for c in range(20)}  # at most the cell's combinations


def test_the_judges_agreement_is_the_review_code_by_generation():
    one = results(list(range(10)))[1]
    same = agreement_of(one, one, 1, RULES)
    assert same["full_marks"]["kappa"] == pytest.approx(1.0) and same["full_marks"]["records"] == 20
    assert same["points"]["n"] == 20 * 5 and same["points"]["records"] == 20  # k + 3 points per generation
    other = results(list(range(5, 15)))[1]
    other[0] = sample(0, None)  # the second judge could not grade it: left out, not a disagreement
    found = agreement_of(one, other, 1, RULES)
    assert found["full_marks"]["records"] == 19
    x = np.array([c < 10 for c in range(1, 20)], dtype=float)
    y = np.array([5 <= c < 15 for c in range(1, 20)], dtype=float)
    assert found["full_marks"]["raw"] == pytest.approx((x == y).mean())
    low, high = found["full_marks"]["kappa_ci"]
    assert low <= found["full_marks"]["kappa"] <= high


def test_paired_of_one_seed_is_the_comparisons_statistic():
    """A set without seeds enters as its one run: the numbers of `skillmix eval compare`."""
    config = build_experiment(SEEDS)
    config = config.model_copy(
        update={
            "training_sets": {
                n: t.model_copy(update={"seeds": None}) for n, t in config.training_sets.items()
            }
        }
    )
    runs = {("tiny", "D1"): results([0, 1]), ("tiny", "D123"): results(list(range(8)))}
    from skillmix.evaluation.pairing import per_combination

    va = per_combination("a", *runs[("tiny", "D1")])[(2, "held-out")]
    vb = per_combination("b", *runs[("tiny", "D123")])[(2, "held-out")]
    got = paired_contrasts(config, runs)[("tiny", "D1", "D123")][("held-out", 2, "full_marks")]
    assert {k: v for k, v in got.items() if k != "seeds"} == paired(va, vb, 0)


def test_regrading_over_http_counts_what_the_second_judge_could_not_grade(tmp_path):
    """A fed evaluation re-graded by a loopback second judge that fails every request of one text: that
    generation is errored (left out of the results and the agreement, counted), the others graded; the same
    call again sends only what failed."""
    import json

    from skillmix.evaluation.config import build_eval_config
    from skillmix.evaluation.crossjudge import regrade
    from skillmix.llm.client import Endpoint
    from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer, Fault, SkillMixResponder

    judged = tmp_path / "eval"
    judged.mkdir()
    fed, samples = results(list(range(10)))
    for s in samples:
        s["answer"] = f"Text {s['combination']} on sewing, a metaphor and a red herring."
    (judged / "results.json").write_text(json.dumps({**fed, "run_id": "r", "created": "t", "student": {}}))
    (judged / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    settings = {"judge": {"model": "j"}, "grader_runs": 1, "generations": 1, "k": [2],
                "client": {"max_retries": 0}}  # fmt: skip
    config = build_eval_config(None, settings)
    broken = Fault(status=500, match="Text c3 on sewing", attempts=None)
    with FakeOpenAIServer(responder=SkillMixResponder(seed=2), faults=[broken]) as server:
        out = tmp_path / "second"
        record = regrade(
            config, Endpoint("second", server.base_url), judged, out, 4, seed=0, log=lambda m: None
        )
        picked = chosen(samples, 4, 0)
        sent = [r for r in server.requests if r.path == CHAT_PATH]
        assert len({r.key for r in sent}) == 4  # one grader run per chosen generation
        regraded = json.loads((out / "results.json").read_text())
        failed = "held-out:c3:g0" in {f"held-out:{c}:g0" for c in picked}
        assert regraded["errored"] == (["held-out:c3:g0"] if failed else [])
        assert regraded["results"][0]["errored_generations"] == int(failed)
        assert record["full_marks"]["records"] == 4 - int(failed)
        assert regraded["judge"]["model"] == "second" and regraded["protocol"]["cross_judge"]["n"] == 4
        before = len(sent)
        regrade(config, Endpoint("second", server.base_url), judged, out, 4, seed=0, log=lambda m: None)
        again = [r for r in server.requests if r.path == CHAT_PATH]
        assert len(again) - before == int(failed)  # only the failed one is sent again (the cache)
