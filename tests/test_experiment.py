"""`skillmix experiment run`: the experiment file's checks, the plan
of the paper's experiment on a machine with no key and no GPU, and the smoke experiment end to end against
the fake OpenAI server (teacher and judge) with the tiny model: every stage, then a second run that sends
no request and trains nothing, then an edit of one student's recipe that re-runs only its stages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_runs import HUB_TOKEN, cli_env, hub_env, run_here

from skillmix.config import ConfigError
from skillmix.experiment.config import build_experiment

ROOT = Path(__file__).resolve().parents[1]
PAPER, SMOKE = ROOT / "experiments" / "paper.yaml", ROOT / "experiments" / "smoke.yaml"


def test_the_experiment_file_is_checked(tmp_path):
    bad = tmp_path / "bad.yaml"
    data = yaml.safe_load(SMOKE.read_text())
    bad.write_text(yaml.safe_dump({**data, "colour": "blue"}))
    with pytest.raises(ConfigError, match=r"bad.yaml: colour: unknown key"):
        build_experiment(bad)
    bad.write_text(yaml.safe_dump({**data, "students": {"tiny": {"recipe": "x", "training_sets": ["D9"]}}}))
    with pytest.raises(ConfigError, match=r"no training set 'D9'"):
        build_experiment(bad)


def run(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skillmix.cli", "experiment", "run", *args], cwd=ROOT,
                          capture_output=True, text=True, env=env or cli_env(), timeout=timeout)  # fmt: skip


def here(*args: str, changes: dict | None = None) -> subprocess.CompletedProcess:
    """`skillmix experiment run ARGS` in this process (``run_here``); run from ROOT, as ``run``."""
    return run_here(["experiment", "run", *args], changes)


def test_the_paper_plan_needs_no_key_and_no_gpu_and_the_run_says_what_it_needs(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(ROOT)
    # no GPU visible; torch reads CUDA_VISIBLE_DEVICES once per process, and this one may have looked already
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = {"CUDA_VISIBLE_DEVICES": ""}
    plan = here(str(PAPER), "--plan", "--out", str(tmp_path / "runs"), changes=env)
    assert plan.returncode == 0, plan.stderr[-2000:]
    lines = plan.stdout.splitlines()
    assert lines[0].startswith("Experiment paper") and "19 stages" in lines[0]
    assert any(line.split()[0] == "train/mistral-7b/D123" and "GPU-hours" in line for line in lines[1:])
    # 3 settings x 4 k x 300 combinations x 3 generations x (2 rounds + 3 grader runs), 3/5 to the judge
    base = "54,000 requests"
    assert any(line.split()[0] == "eval/mistral-7b/base" and base in line for line in lines[1:])
    assert any("needs: OPENAI_API_KEY" in line for line in lines) and "to run:" in lines[-1]
    assert "at most 85.8 GPU-hours (every sample at max_length tokens, an upper bound" in lines[-1]
    # the cost paper.yaml states in its comment is the plan's (a figure in a comment goes stale otherwise)
    stated = re.search(r"gpt-4o prices\): ([\d,]+) requests, worst case (\$[\d,]+), expected (\$[\d,]+)",
                       PAPER.read_text())  # fmt: skip
    assert stated is not None
    worst = re.search(r"worst case \$([\d,.]+), expected \$([\d,.]+)", lines[-1])
    assert f"to run: {stated[1]} requests" in lines[-1]
    assert [f"${round(float(v.replace(',', ''))):,}" for v in worst.groups()] == [stated[2], stated[3]]
    power = [line.strip() for line in lines if line.strip().startswith("finding ")]
    assert len(power) == 2 * 6 + 3  # findings 1 and 2 for both students, finding 3 for mistral-7b
    assert "finding 1 llama-2-13b D(1,2,3) - D(1) train k=4, n=300: detects 0.03 at 80% power" in power[4 + 0]
    assert "the paper reports +0.08" in power[4] and "WARNING" not in "".join(power)
    assert not (tmp_path / "runs").exists()  # the plan writes nothing
    stopped = here(str(PAPER), "--out", str(tmp_path / "runs"), changes=env)
    assert stopped.returncode == 2 and stopped.stderr.count("\n") == 1, stopped.stderr
    assert "cannot run here: it needs OPENAI_API_KEY" in stopped.stderr and "4 GPUs" in stopped.stderr
    assert not (tmp_path / "runs").exists()


# ---- the smoke experiment, end to end ------------------------------------------------------------------


def smoke_copy(tmp_path: Path) -> Path:
    """experiments/smoke.yaml with tiny-b's recipe a copy the test may edit."""
    recipe = tmp_path / "tiny-b.yaml"
    recipe.write_text((ROOT / "training" / "recipes" / "tiny" / "smoke.yaml").read_text())
    data = yaml.safe_load(SMOKE.read_text())
    data["students"]["tiny-b"]["recipe"] = str(recipe)
    path = tmp_path / "smoke.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def ran(stderr: str) -> list[str]:
    """The stages the runner says it ran (``[name] new: running``)."""
    return sorted(line.split("]")[0][1:] for line in stderr.splitlines()
                  if line.startswith("[") and line.endswith(": running"))  # fmt: skip


@pytest.mark.slow  # 71 s on 2 cores (every stage its own process, the experiment run 3 times)
def test_the_smoke_experiment_runs_every_stage_then_only_what_changed(tmp_path):
    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    experiment, out = smoke_copy(tmp_path), tmp_path / "runs"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.6)) as server:
        roles = ["--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
                 "--judge-base-url", server.base_url, "--out", str(out)]  # fmt: skip
        first = run(str(experiment), *roles)
        assert first.returncode == 0, first.stderr[-4000:]
        stages = ["dataset", "train/tiny/D1", "train/tiny/D123", "train/tiny-b/D1", "eval/tiny/D1",
                  "eval/tiny/D123", "eval/tiny-b/D1", "compare", "report"]  # fmt: skip
        assert ran(first.stderr) == sorted(stages)
        requests = len(server.requests)
        assert requests > 0
        recorded = json.loads((out / "stages.json").read_text())["stages"]
        assert set(recorded) == set(stages) and all(entry["finished"] for entry in recorded.values())
        report = out / "report"
        assert {p.name for p in report.iterdir()} >= {"report.md", "results.csv", "findings.json", "plots"}
        text = (report / "report.md").read_text()
        assert "## Full Marks" in text and "| tiny | D(1,2,3) |" in text and "## Findings" in text
        (finding,) = json.loads((report / "findings.json").read_text())["findings"]
        assert finding["student"] == "tiny" and [c["k"] for c in finding["checks"]] == [2, 3]
        assert finding["verdict"] in ("inconclusive", "reproduced", "not reproduced")  # decided by the rule
        assert all(c["paired"]["n"] == 3 for c in finding["checks"])  # 3 combinations each, both answered
        assert "tiny D(1,2,3) − D(1), held-out k = 2" in text  # a line names the student and both sets
        assert (out / "compare" / "tiny" / "comparison.json").is_file()  # one comparison per student
        rows = (report / "results.csv").read_text().splitlines()
        assert rows[0] == (
            "student,training_set,seed,setting,k,metric,mean,stderr,ci_low,ci_high,n,seeds,"
            "seed_min,seed_max,seed_sd"
        )
        assert len(rows) == 1 + 3 * 2 * 3  # 3 models x (held-out k = 2, 3) x 3 metrics
        trained = out / "train" / "tiny--D123"
        assert (trained / "model.safetensors").is_file()
        recipe = yaml.safe_load((out / "recipes" / "tiny--D123.yaml").read_text())
        assert recipe["data"]["datasets"] == [{"path": str(out / "dataset"), "configs": ["k1", "k2", "k3"]}]
        weights = (trained / "model.safetensors").stat().st_mtime_ns

        second = run(str(experiment), *roles)  # nothing changed: nothing runs, nothing is sent
        assert second.returncode == 0, second.stderr[-3000:]
        assert ran(second.stderr) == [] and second.stderr.count("skipped") == len(stages)
        assert (
            len(server.requests) == requests and (trained / "model.safetensors").stat().st_mtime_ns == weights
        )

        edited = tmp_path / "tiny-b.yaml"  # one student's recipe: its training and evaluation run again
        edited.write_text(edited.read_text().replace("learning_rate: 3.0e-3", "learning_rate: 2.0e-3"))
        third = run(str(experiment), *roles)
        assert third.returncode == 0, third.stderr[-3000:]
        assert ran(third.stderr) == ["compare", "eval/tiny-b/D1", "report", "train/tiny-b/D1"]
        assert (out / "train" / "tiny-b--D1.previous").is_dir()  # the old run is kept aside, not mixed in
        assert (trained / "model.safetensors").stat().st_mtime_ns == weights


@pytest.mark.slow  # about 100 s on 2 cores: four trainings, five evaluations, five re-gradings
def test_the_seeds_smoke_experiment_reports_per_seed_cells_and_the_second_judge(tmp_path):
    from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer, SkillMixResponder

    out = tmp_path / "runs"
    with (
        FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.6)) as server,
        FakeOpenAIServer(responder=SkillMixResponder(seed=9, accept_rate=0.4)) as second,
    ):
        # the tiny students answer nothing gradable: an API base model (the fake) gives the second judge
        # texts to re-grade
        data = yaml.safe_load((ROOT / "experiments" / "smoke-seeds.yaml").read_text())
        data["students"]["tiny"].update(base="fake-student", base_url=server.base_url)
        data["evaluation"]["settings"]["student"]["max_tokens"] = 300  # room for the fake's whole reply
        experiment = tmp_path / "smoke-seeds.yaml"
        experiment.write_text(yaml.safe_dump(data, sort_keys=False))
        roles = ["--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
                 "--cross-judge-base-url", second.base_url, "--out", str(out)]  # fmt: skip
        first = run(str(experiment), *roles)
        assert first.returncode == 0, first.stderr[-4000:]
        stages = ran(first.stderr)
        assert {"train/tiny/D1@seed0", "train/tiny/D123@seed1", "cross-judge/tiny/D123@seed1",
                "cross-judge/tiny/base"} <= set(stages)  # fmt: skip
        graded = json.loads((out / "cross-judge" / "tiny--base" / "agreement.json").read_text())
        generations = graded["full_marks"]["records"]
        assert 0 < generations <= 2 * 2  # 2 cells x 2 combinations x 1 generation the base answered
        chats = [r for r in second.requests if r.path == CHAT_PATH]
        assert len(chats) == generations * 3  # 3 grader runs each; the tiny students' failures go unsent
        again = run(str(experiment), *roles)
        assert again.returncode == 0 and ran(again.stderr) == []
        assert len([r for r in second.requests if r.path == CHAT_PATH]) == len(chats)  # nothing paid twice
    seeds = [yaml.safe_load((out / "recipes" / f"tiny--D123@seed{s}.yaml").read_text()) for s in (0, 1)]
    assert [r["training"]["seed"] for r in seeds] == [0, 1]
    weights = [(out / "train" / f"tiny--D123@seed{s}" / "model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]  # two models, not one trained twice
    text = (out / "report" / "report.md").read_text()
    assert "| tiny | D(1,2,3) seed 0 |" in text and "| tiny | D(1,2,3) seed 1 |" in text
    assert "| tiny | D(1,2,3), mean of 2 seeds |" in text
    checked = json.loads((out / "report" / "findings.json").read_text())
    (finding,) = checked["findings"]
    assert [c["paired"]["seeds"] for c in finding["checks"]] == [[2, 2], [2, 2]]
    crossed = checked["cross_judge"]
    assert len(crossed["evaluations"]) == 5 and crossed["pooled"]["full_marks"]["records"] == generations
    assert [v["finding"] for v in crossed["verdicts"]] == ["2"]
    assert all(c["n"] == 2 for c in crossed["verdicts"][0]["checks"])  # the 2 re-graded combinations
    assert "## Second judge" in text and f"| all | pooled | {generations} |" in text
    assert "under the first judge" in text and "under the second" in text


def write_experiment(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(SMOKE.read_text())
    data.update(changes)  # whole sections replaced
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_what_cannot_finish_is_refused_before_the_first_request(tmp_path, monkeypatch):
    from skillmix.processes import free_port
    from skillmix.testing.fake_openai import FakeOpenAIServer

    monkeypatch.chdir(ROOT)
    out = tmp_path / "runs"
    roles = ["--teacher-model", "fake-teacher", "--out", str(out)]
    closed = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = here(str(SMOKE), *roles, "--teacher-base-url", closed)
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert "skillmix: error:" in unreachable.stderr and closed.split("/v1")[0] in unreachable.stderr
    # an evaluation in the train setting with fewer combinations left than it asks for: a user's catalog of
    # 56 training combinations of k = 2, a dataset that draws 50 of them, an evaluation of 10
    skills = [{"name": f"s{i}", "category": ("literary", "rhetorical", "logical")[min(i // 4, 2)],
               "definition": "d", "example": "e"} for i in range(12)]  # fmt: skip
    catalog = tmp_path / "small.yaml"
    catalog.write_text(yaml.safe_dump({"skills": skills, "topics": ["Sewing", "Knots", "Tides", "Bees"]}))
    small = write_experiment(tmp_path, dataset={"settings": {"k": [2], "n": 50, "catalog": str(catalog)}},
                             training_sets={"D2": {"configs": ["k2"]}},
                             students={"tiny": {"recipe": "training/recipes/tiny/smoke.yaml"}},
                             evaluation={"settings": {"k": [2], "setting": ["train"], "n": 10}},
                             findings=[])  # fmt: skip
    with FakeOpenAIServer() as server:
        refused = here(str(small), *roles, "--teacher-base-url", server.base_url)
        assert [
            r.path for r in server.requests if r.path != "/v1/models"
        ] == []  # only the reachability check
    assert refused.returncode == 2, refused.stderr
    left = "56 combinations at k=2 and the dataset drew 50 of them: 6 are left, fewer than the 10 asked for"
    assert left in refused.stderr
    assert not out.exists()


@pytest.mark.slow  # about 50 s; each push is tested on its own in the default suite (publish, eval, train)
def test_with_hub_targets_the_dataset_models_and_report_go_to_the_hub(tmp_path, hub):
    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    token = HUB_TOKEN
    experiment = write_experiment(
        tmp_path,
        training_sets={"D23": {"configs": ["k2", "k3"], "label": "D(2,3)"}},
        students={"tiny": {"recipe": "training/recipes/tiny/smoke.yaml"}},
        hub={"dataset_repo": "tester/smoke-data", "models": "tester", "results_repo": "tester/smoke-results"},
        findings=[],
    )
    out = tmp_path / "runs"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=3, accept_rate=0.8)) as server:
        env = {**hub_env(hub, tmp_path / "hf", token), "OMP_NUM_THREADS": "1"}
        roles = ["--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
                 "--judge-base-url", server.base_url]  # fmt: skip
        result = run(str(experiment), *roles, "--out", str(out), env=env)
        assert result.returncode == 0, result.stderr[-4000:]
        assert "v1.0.0" in hub.refs("tester/smoke-data")["tags"]  # the dataset's release
        card = hub.uploaded_files("tester/tiny-D23", repo_type="model")["README.md"].decode()
        meta = yaml.safe_load(card.split("---")[1])
        results = meta["model-index"][0]["results"]
        assert any(m["type"] == "full_marks" for r in results for m in r["metrics"])  # the model-index
        tags = hub.refs("tester/smoke-results")["tags"]
        report = [t for t in tags if t.startswith("smoke-")]
        assert len(report) == 1  # the report: one tagged commit of the results repo
        files = hub.uploaded_files("tester/smoke-results", revision=report[0])
        assert {"experiments/smoke/report.md", "experiments/smoke/findings.json"} <= set(files)
    assert token not in result.stdout + result.stderr


def test_a_stage_resumes_its_folder_unless_its_own_key_changed(tmp_path):
    from skillmix.experiment.stages import Ledger, Stage

    folder = tmp_path / "eval" / "tiny--D2"
    folder.mkdir(parents=True)
    (folder / "cache.sqlite").write_text("answers paid for")
    ledger = Ledger(tmp_path)
    first = Stage("eval/tiny/D2", folder, "aaa", "eval", folder_key="model-1")
    ledger.start(first)
    ledger.finish(first, 1.0)
    assert Ledger(tmp_path).done(first) and Ledger(tmp_path).status(first) == "done"
    bigger = Stage("eval/tiny/D2", folder, "bbb", "eval", folder_key="model-1")  # more combinations
    assert not Ledger(tmp_path).done(bigger) and Ledger(tmp_path).status(bigger) == "changed"
    Ledger(tmp_path).start(bigger)
    assert (folder / "cache.sqlite").read_text() == "answers paid for"  # resumed in place: paid once
    other = Stage("eval/tiny/D2", folder, "ccc", "eval", folder_key="model-2")  # another model
    Ledger(tmp_path).start(other)
    assert not folder.exists() and (folder.parent / "tiny--D2.previous" / "cache.sqlite").is_file()
    assert Ledger(tmp_path).status(other) == "unfinished"


def test_make_reproduce_plan_runs_the_plan_command(tmp_path):
    """`make reproduce PLAN=1` is the plan command the test above runs (no key, no GPU); `make reproduce`
    the run it refuses there."""
    make = ["make", "--no-print-directory", "-n", "reproduce", "PLAN=1", f"BIN={Path(sys.executable).parent}",
            f"ARGS=--out {tmp_path / 'runs'}"]  # fmt: skip
    dry = subprocess.run(make, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    line = next(line for line in dry.stdout.splitlines() if "experiment run" in line)
    assert line.split()[1:] == ["experiment", "run", "experiments/paper.yaml", "--plan", "--out",
                                str(tmp_path / "runs")]  # fmt: skip
    run = subprocess.run(
        [*make[:4], "reproduce", make[5]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "--plan" not in next(line for line in run.stdout.splitlines() if "experiment run" in line)
