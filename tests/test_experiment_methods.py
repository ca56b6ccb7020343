"""SFT, then DPO and GRPO from the SFT model, as one experiment file: the methods reach the recipes, a set
starts from the model another trained, the judge is the experiment's, the plan prints each method's judge
requests per step (nothing is run or sent), and the smoke file runs end to end (slow)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml
from cli_runs import run_here

from skillmix.config import ConfigError
from skillmix.experiment.config import build_experiment
from skillmix.experiment.launch import recipe_data
from skillmix.training.config import TrainConfig
from skillmix.training.plan import judge_requests_per_step

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "experiments" / "methods-smoke.yaml"
FLAGS = {"teacher_model": "gpt-4o-mini", "teacher_base_url": "http://127.0.0.1:9/v1"}


def test_each_training_set_trains_with_its_method_and_the_experiments_judge(tmp_path):
    args = argparse.Namespace(**FLAGS, judge_model="gpt-4o", judge_base_url=None, out=str(tmp_path))
    config = build_experiment(SMOKE, args)
    recipes = {ts: recipe_data(config, "tiny", ts, tmp_path / "data") for ts in ("SFT", "DPO", "GRPO")}
    trained = {ts: TrainConfig.model_validate(data) for ts, data in recipes.items()}
    assert {ts: c.method for ts, c in trained.items()} == {"SFT": "sft", "DPO": "dpo", "GRPO": "grpo"}
    assert trained["DPO"].data.datasets[0].configs == ["preference"]
    assert trained["GRPO"].grpo.judge.model == "gpt-4o"  # the one judge of data, RL and evaluation
    assert trained["GRPO"].grpo.judge.grader_runs == 2  # the recipe's grading settings are kept
    per_step = {ts: judge_requests_per_step(c, 1) for ts, c in trained.items()}
    assert per_step == {"SFT": 0, "DPO": 0, "GRPO": 4 * 2}  # 4 completions a step x 2 grader runs


def test_the_plan_prints_judge_requests_per_step_of_each_method(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cmd = ["experiment", "run", "experiments/methods-smoke.yaml", "--plan",
           "--teacher-model", "gpt-4o-mini", "--judge-model", "gpt-4o-mini",
           "--teacher-base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "runs")]  # fmt: skip
    result = run_here(cmd)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  train/")}
    assert "sft: 0 judge requests per step" in lines["train/tiny/SFT"]
    assert "dpo: 0 judge requests per step" in lines["train/tiny/DPO"]
    assert "grpo: 8 judge requests per step" in lines["train/tiny/GRPO"]
    assert "32 requests" in lines["train/tiny/GRPO"]  # 8 a step x max_steps 4, priced in the total
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_dpo_and_grpo_start_from_the_sft_model(tmp_path):
    args = argparse.Namespace(**FLAGS, judge_model=None, judge_base_url=None, out=str(tmp_path))
    for path in (SMOKE, ROOT / "experiments" / "methods.yaml"):
        config = build_experiment(path, args)
        student = next(iter(config.students))
        assert [run for _, run in config.runs()] == ["SFT", "DPO", "GRPO"]  # the source trains first
        for ts in ("DPO", "GRPO"):
            model = recipe_data(config, student, ts, tmp_path / "data")["model"]
            assert (
                model["name_or_path"] == str(tmp_path / "train" / f"{student}--SFT") and model["tiny"] is None
            )
        sft = recipe_data(config, student, "SFT", tmp_path / "data")["model"]
        assert sft["name_or_path"] != str(tmp_path / "train" / f"{student}--SFT")
    from skillmix.experiment.runner import Experiment

    experiment = Experiment(build_experiment(SMOKE, args))
    changed = build_experiment(SMOKE, args)
    changed.training_sets["SFT"].subsample = {"k2": 4}
    edited = Experiment(changed)
    for name in ("train/tiny/DPO", "train/tiny/GRPO"):  # an SFT edit re-trains what starts from it
        assert experiment.stage(name).fingerprint != edited.stage(name).fingerprint


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DPO": {"from": "nope"}}, "training_sets.DPO.from: no training set 'nope'"),
        ({"SFT": {"from": "GRPO"}, "GRPO": {"from": "SFT"}}, "goes round in a circle"),
        ({"SFT": {"seeds": [0, 1]}}, "give DPO the same seeds"),
    ],
)
def test_a_bad_start_is_refused_with_the_reason(tmp_path, change, message):
    data = yaml.safe_load(SMOKE.read_text())
    for name, update in change.items():
        data["training_sets"][name].update(update)
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        build_experiment(path)
    data = yaml.safe_load(SMOKE.read_text())
    data["students"]["tiny"]["training_sets"] = ["DPO"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"students\.tiny trains DPO but not SFT"):
        build_experiment(path)


@pytest.mark.slow  # minutes on 2 cores: a dataset, three trainings (one GRPO), four evaluations
def test_the_methods_smoke_experiment_runs_end_to_end(tmp_path):
    import json
    import subprocess
    import sys

    from cli_runs import cli_env

    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    out = tmp_path / "runs"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=4, accept_rate=0.6)) as server:
        cmd = [sys.executable, "-m", "skillmix.cli", "experiment", "run", str(SMOKE), "--teacher-model",
               "fake-teacher", "--teacher-base-url", server.base_url, "--out", str(out)]  # fmt: skip
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=cli_env(), timeout=1500)
        assert done.returncode == 0, done.stderr[-4000:]
    for ts in ("SFT", "DPO", "GRPO"):
        assert (out / "train" / f"tiny--{ts}" / "model.safetensors").is_file()
    recipe = yaml.safe_load((out / "recipes" / "tiny--DPO.yaml").read_text())
    assert recipe["model"]["name_or_path"] == str(out / "train" / "tiny--SFT")
    checked = json.loads((out / "report" / "findings.json").read_text())
    assert checked["findings"] == []  # a method comparison decides no finding
    assert [c["compared"] for c in checked["comparisons"]] == [["SFT", "DPO"], ["SFT", "GRPO"]]
    assert all(c["paired"]["n"] == 3 for r in checked["comparisons"] for c in r["checks"])
    text = (out / "report" / "report.md").read_text()
    assert "## Comparisons" in text and "## Findings" in text and "**Finding" not in text
