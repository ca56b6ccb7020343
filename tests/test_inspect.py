"""The inspect_ai task against ``skillmix eval``: the same evaluation set, the same loopback student and
judge (replies that depend on the request's messages and seed only), the same numbers; ``skillmix eval
import-inspect`` and ``eval compare`` across both; a judge that fails a request. Skipped, with the reason,
when the ``inspect`` extra is absent (``.ci/run`` installs it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runs import CLI, cli_env, run_here
from test_eval import Scripted, eval_cmd

from skillmix.evaluation.files import read_results, read_samples
from skillmix.evaluation.pairing import per_combination
from skillmix.metrics import METRICS
from skillmix.testing.fake_openai import FakeOpenAIServer, Reply, SkillMixResponder
from skillmix.testing.fake_openai.wire import last_user_message

inspect_ai = pytest.importorskip(
    "inspect_ai", reason="the inspect extra is absent: pip install -e '.[inspect]' (.ci/run installs it)"
)
from inspect_ai.log import read_eval_log  # noqa: E402

# test_eval's student and judge: an OpenAI-compatible server (service "fake": FAKE_BASE_URL, FAKE_API_KEY)
MODEL = "openai-api/fake/fake-teacher"
# the settings of test_eval's eval_cmd, as task parameters
TASK_ARGS = {"k": 2, "setting": "held-out", "n": 3, "generations": 2}


def inspect_cli(server, log_dir: Path, args: dict) -> subprocess.CompletedProcess:
    """``inspect eval skillmix/skill_mix`` as a user runs it: the entry point finds the task; the student and
    the ``grader`` role are OpenAI models on the loopback server."""
    cmd = [sys.executable, "-m", "inspect_ai", "eval", "skillmix/skill_mix", "--model", MODEL,
           "--model-role", f"grader={MODEL}", "--log-dir", str(log_dir), "--display", "plain",
           "--max-retries", "0", *(f"-T{key}={value}" for key, value in args.items())]  # fmt: skip
    env = cli_env({"FAKE_BASE_URL": server.base_url, "FAKE_API_KEY": "test"})
    # run outside the checkout: there `skillmix/skill_mix` names the folder skillmix/, not the registered task
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=log_dir.parent)


def inspect_here(server, judge_server, log_dir: Path, args: dict):
    """The same run in this process (inspect's ``eval`` of the task itself: under ``python -m pytest`` the
    checkout's skillmix.egg-info, first on sys.path, hides the editable install that names the task's
    package), the judge on its own server."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import get_model

    from skillmix.evaluation.inspect_task import skill_mix

    grader = get_model(MODEL, base_url=judge_server.base_url, api_key="test")
    [log] = inspect_eval(skill_mix(**args), model=MODEL, model_base_url=server.base_url,
                         model_args={"api_key": "test"}, model_roles={"grader": grader}, task_args=args,
                         log_dir=str(log_dir), display="none", max_retries=0)  # fmt: skip
    return log


def log_metrics(log) -> dict[str, dict[str, float]]:
    """{metric: {"mean": .., "stderr": ..}} of a log of one (setting, k); by group name with several."""
    return {score.name: {m.name: m.value for m in score.metrics.values()} for score in log.results.scores}


def imported(log_path: Path, out: Path) -> dict:
    result = run_here([*CLI, "eval", "import-inspect", str(log_path), str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return read_results(out)


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """test_eval's scripted student and judge (a refusal, ties, unparseable runs, the length override),
    through ``skillmix eval`` and through ``inspect eval``; the log imported."""
    root = tmp_path_factory.mktemp("inspect")
    with FakeOpenAIServer(responder=Scripted()) as server:
        ours = run_here(eval_cmd(server, root / "ours"))
        assert ours.returncode == 0, ours.stderr[-3000:]
        theirs = inspect_cli(server, root / "logs", TASK_ARGS)
        assert theirs.returncode == 0, theirs.stderr[-3000:]
    [log_path] = (root / "logs").glob("*.eval")
    imported(log_path, root / "imported")
    return root / "ours", read_eval_log(str(log_path)), root / "imported"


# the fixture: 18-37 s on the shared 2-core machine (skillmix eval, then `inspect eval` as a process)
def test_inspect_eval_writes_the_metrics_of_skillmix_eval(both):
    folder, log, _imported = both
    [result] = read_results(folder)["results"]
    assert log.status == "success" and log.eval.task == "skillmix/skill_mix"
    assert (result["n"], result["failed_generations"], result["unparseable_grades"]) == (3, 1, 4)
    found = log_metrics(log)
    for name in METRICS:  # to the last digit: the same values, the same formulas (ddof=1)
        assert found[name] == {"mean": result[name]["mean"], "stderr": result[name]["stderr"]}, name
    assert log.eval.config.epochs == 2 and log.results.scores[0].reducer == "max"
    # each epoch a generation, seeded as skillmix eval seeds it; the grader role graded, three runs each
    assert sorted({s.epoch for s in log.samples}) == [1, 2] and len(log.samples) == 6


def test_the_imported_log_is_the_same_evaluation(both):
    folder, _log, other = both
    ours, theirs = read_results(folder), read_results(other)
    assert theirs["results"] == ours["results"]  # every count and interval, not just the means
    assert theirs["protocol"]["eval_set_hash"] == ours["protocol"]["eval_set_hash"]
    mine = {s["id"]: s for s in read_samples(folder)}
    got = {s["id"]: s for s in read_samples(other)}
    assert set(got) == set(mine) and len(got) == 6  # the ids skillmix eval gives each generation
    for key in ("answer", "grader_outputs", "grader_points", "grader_status", "grader_errors",
                "round1_status", "round1_error", "round2_status", "round2_error"):  # fmt: skip
        assert {i: s[key] for i, s in got.items()} == {i: s[key] for i, s in mine.items()}, key
    points = [
        {
            key: {c: list(v) for c, v in by_id.items()}
            for key, by_id in per_combination(name, run, samples).items()
        }
        for name, run, samples in (("a", ours, list(mine.values())), ("b", theirs, list(got.values())))
    ]
    assert points[0] == points[1] and len(points[0][(2, "held-out")]) == 3


def test_compare_pairs_skillmix_eval_with_the_imported_log(both, tmp_path):
    folder, _log, other = both
    result = run_here([*CLI, "eval", "compare", str(folder), str(other), "--out", str(tmp_path / "cmp")])
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["rows"]
    versus = [cell for row in rows for cell in row["vs_baseline"].values()]
    assert len(versus) == 3 and all(cell["n"] == 3 and cell["difference"] == 0 for cell in versus)
    rescored = run_here([*CLI, "eval", "rescore", str(other), "--no-length-override"])
    assert rescored.returncode == 0, rescored.stderr[-3000:]


def test_an_epoch_the_log_lacks_is_not_run(both, tmp_path):
    """A cancelled run's log holds some epochs: the others are left out as not run, never scored."""
    from inspect_ai.log import write_eval_log

    _folder, log, _other = both
    kept = [s for s in log.samples if not (s.epoch == 2 and s.id == log.samples[0].id)]
    write_eval_log(log.model_copy(update={"samples": kept}), str(tmp_path / "cut.eval"))
    [result] = imported(tmp_path / "cut.eval", tmp_path / "cut")["results"]
    assert result["not_run"] == 1 and result["generations"] == 6 and result["n"] == 3


class FailingJudge:
    """A judge server that answers 500 to every grade of one topic's texts, whatever the client."""

    def __init__(self, inner, topic: str) -> None:
        self.inner, self.topic = inner, topic

    def __call__(self, body: dict) -> Reply | str:
        prompt = last_user_message(body)
        if "The text to grade" in prompt and f"Pertains to {self.topic}" in prompt:
            return Reply(status=500, content="the judge is down")
        return self.inner(body)


@pytest.mark.slow  # 9-14 s on the shared 2-core machine: skillmix eval and inspect eval, both waiting on 500s
def test_a_failed_judge_request_is_an_error_never_a_zero(tmp_path):
    from test_eval import combos

    topic = combos()[0].topic
    args = TASK_ARGS
    with (
        FakeOpenAIServer(responder=Scripted()) as student,
        FakeOpenAIServer(responder=FailingJudge(Scripted(), topic)) as judge,
    ):
        log = inspect_here(student, judge, tmp_path / "logs", args)
        cmd = eval_cmd(student, tmp_path / "ours")
        cmd[cmd.index("--judge-base-url") + 1] = judge.base_url
        ours = run_here(cmd)
    assert ours.returncode == 1  # skillmix eval: errored generations, the run exits 1
    errors = [s for s in log.samples if s.error is not None]
    assert errors and all(topic in str(s.metadata["topic"]) for s in errors)
    [log_path] = (tmp_path / "logs").glob("*.eval")
    results = imported(log_path, tmp_path / "imported")
    mine = read_results(tmp_path / "ours")
    assert sorted(results["errored"]) == sorted(mine["errored"]) and results["errored"]
    assert results["results"] == mine["results"]  # left out and counted alike


# 3-9 s on the shared 2-core machine: a skillmix eval and an inspect eval of four (setting, k), in process
def test_the_default_responder_gives_the_same_numbers_by_setting_and_k(tmp_path):
    """Several (setting, k): inspect's metrics grouped by them, each the skillmix eval figure."""
    args = {"k": "2,3", "setting": "train,held-out", "n": 2, "generations": 2}
    with FakeOpenAIServer(responder=SkillMixResponder(accept_rate=0.4)) as server:
        log = inspect_here(server, server, tmp_path / "logs", args)
        cmd = eval_cmd(server, tmp_path / "ours")
        for flag, value in (("--k", "2,3"), ("--setting", "train,held-out"), ("--n", "2")):
            cmd[cmd.index(flag) + 1] = value
        assert run_here(cmd).returncode == 0
    mine = read_results(tmp_path / "ours")["results"]
    assert len(mine) == 4
    found = {score.name: {m.name: m.value for m in score.metrics.values()} for score in log.results.scores}
    for result in mine:
        group = f"{result['setting']} k={result['k']}"
        for name in METRICS:
            assert found[name][f"{group} mean"] == result[name]["mean"]
            assert found[name][f"{group} stderr"] == result[name]["stderr"]
    assert {len(found[name]) for name in METRICS} == {8}


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "missing.eval", "no such inspect log"),
        (lambda tmp: (tmp / "x.eval").write_text("not a zip") and tmp / "x.eval", "is not an inspect log"),
    ],
)
def test_import_inspect_refuses_what_is_not_a_skill_mix_log(tmp_path, make, says):
    result = run_here([*CLI, "eval", "import-inspect", str(make(tmp_path)), str(tmp_path / "out")])
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_import_inspect_refuses_a_log_of_another_task(tmp_path):
    from inspect_ai import Task
    from inspect_ai import eval as inspect_eval
    from inspect_ai.dataset import Sample
    from inspect_ai.scorer import match
    from inspect_ai.solver import generate

    other = Task(dataset=[Sample(input="Hi", target="hi")], solver=generate(), scorer=match(), name="other")
    inspect_eval(other, model="mockllm/model", log_dir=str(tmp_path / "logs"), display="none")
    [log_path] = (tmp_path / "logs").glob("*.eval")
    result = run_here([*CLI, "eval", "import-inspect", str(log_path), str(tmp_path / "out")])
    assert result.returncode == 2 and "is not a log of skillmix/skill_mix (its task: other" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"student": {"model": "gpt-4o"}}, "-T student: inspect decides it"),
        ({"judge_temperature": 0, "k": 3}, "judge.temperature 0 with grader_runs 3"),
        ({"setting": "sideways"}, "unknown setting 'sideways'"),
        ({"max_usd": 5}, "max_usd"),
    ],
)
def test_the_task_checks_its_parameters_as_skillmix_eval_checks_its_flags(settings, says):
    from skillmix.config import ConfigError
    from skillmix.evaluation.inspect_task import skill_mix

    with pytest.raises(ConfigError, match=re.escape(says)):
        skill_mix(**settings)
