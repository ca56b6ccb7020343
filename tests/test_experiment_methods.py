"""SFT vs DPO vs GRPO as one experiment file: the methods reach the recipes, the judge is the experiment's,
and the plan prints each method's judge requests per step (nothing is run or sent)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli_runs import run_here

from skillmix.experiment.config import build_experiment
from skillmix.experiment.launch import recipe_data
from skillmix.training.config import TrainConfig
from skillmix.training.plan import judge_requests_per_step

ROOT = Path(__file__).resolve().parents[1]
FLAGS = {"teacher_model": "gpt-4o-mini", "teacher_base_url": "http://127.0.0.1:9/v1"}


def test_each_training_set_trains_with_its_method_and_the_experiments_judge(tmp_path):
    args = argparse.Namespace(**FLAGS, judge_model="gpt-4o", judge_base_url=None, out=str(tmp_path))
    config = build_experiment(ROOT / "experiments" / "methods.yaml", args)
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
    cmd = ["experiment", "run", "experiments/methods.yaml", "--plan",
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
