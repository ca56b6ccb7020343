"""GRPO with the Skill-Mix judge as the reward, on CPU and offline: a tiny random student, a tiny dataset
built by the pipeline against the fake OpenAI server, and the fake server as the judge, whose every answer the
test records and grades again on its own (parse, vote, the text checks, the metrics) to check the rewards;
the judge's spending cap, a poisoned prompt set and ``--plan``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skillmix.testing.fake_openai import (
    CHAT_PATH,
    FakeOpenAIServer,
    Reply,
    SkillMixResponder,
    last_user_message,
)

GRPO = "tiny/grpo"
JUDGE = "fake-judge"
GRADED = re.compile(r"<<<\n(.*?)\n>>>", re.S)


@pytest.fixture(scope="module")
def dataset(build_dataset) -> Path:
    """D(1,2,3) with a few kept rows per k, made by `skillmix dataset` against the fake teacher and judge (the
    same build as test_training's)."""
    return build_dataset("1,2,3", 4, 7, 0.9)


class RecordingJudge:
    """The fake judge: a grade of the SkillMixResponder, except for texts whose hash picks a failed request
    (HTTP 400) or an answer no parser reads; every (request, reply) is kept."""

    def __init__(self) -> None:
        self.grader = SkillMixResponder(seed=3, accept_rate=0.6)
        self.seen: list[tuple[dict, Reply | str]] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> Reply | str:
        graded = GRADED.search(last_user_message(body)).group(1)
        pick = hashlib.sha256(graded.encode()).digest()[0] % 5
        if pick == 0:
            reply: Reply | str = Reply(status=400, content="the request could not be processed")
        elif pick == 1:
            reply = "I would rather not grade this text."
        else:
            reply = self.grader(body)
        with self._lock:
            self.seen.append((body, reply))
        return reply


def train(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``skillmix train`` in this process; its ``skillmix:`` lines on stderr."""
    from skillmix.training.cli import main

    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, [line for line in captured.err.splitlines() if line.startswith("skillmix: ")]


def judge_flags(server: FakeOpenAIServer, out: Path, dataset: Path, *more: str) -> list[str]:
    return ["--config", GRPO, "--data", str(dataset), "--output-dir", str(out), "--grpo-judge-model", JUDGE,
            "--grpo-judge-base-url", server.base_url, *more]  # fmt: skip


def journal(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]


def chat_requests(server: FakeOpenAIServer) -> list:
    return [r for r in server.requests if r.path == CHAT_PATH]


@pytest.fixture(scope="module")
def grpo_run(dataset, tmp_path_factory):
    """Three GRPO steps of the tiny recipe (4 completions a step, 2 grader runs each), the fake judge's."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("grpo") / "run"
    recorder = RecordingJudge()
    from skillmix.training.cli import main

    with FakeOpenAIServer(responder=recorder, model=JUDGE) as server:
        code = main(judge_flags(server, out, dataset, "--max-steps", "3", "--save-steps", "3"))
        requests = chat_requests(server)
    torch.set_num_threads(threads)
    assert code == 0
    return out, recorder, requests


def rows_by_id(dataset: Path) -> dict[str, dict]:
    rows = {}
    for config in ("k1", "k2", "k3"):
        for row in pq.read_table(dataset / config / "train-00000-of-00001.parquet").to_pylist():
            rows[str(row["id"])] = row
    return rows


def regraded(answer: dict, row: dict, recorder: RecordingJudge) -> tuple[float | None, list[dict]]:
    """The reward of one answer from the judge's recorded replies, by the test's own reading: every run
    parsed (a failed request or an unread answer does not vote), a strict majority, the length point of the
    sentence counter, no point for a named skill, then (full marks + skill fraction) / 2."""
    from skillmix.catalog import load_catalog
    from skillmix.grading import parse_grade
    from skillmix.metrics import score
    from skillmix.prompts import PromptSet
    from skillmix.rules import ScoringRules

    catalog = load_catalog()
    skills = [catalog.skill(name) for name in row["skills"]]
    prompt = PromptSet().grader(answer["answer"], skills, row["topic"])
    runs = [(body, reply) for body, reply in recorder.seen if last_user_message(body) == prompt]
    points = []
    for _, reply in runs:
        grade = parse_grade(reply, skills, row["topic"]) if isinstance(reply, str) else None
        points.append(grade.points if grade is not None and grade.ok else [float("nan")] * (len(skills) + 3))
    if all(p[0] != p[0] for p in points):  # NaN: no run parsed
        return None, [body for body, _ in runs]
    rules = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")
    metrics = score(points, len(skills), rules, answer["answer"], skills)
    return (metrics["full_marks"] + metrics["skill_fraction"]) / 2, [body for body, _ in runs]


def test_rewards_are_the_points_the_judge_served_one_request_per_completion_and_run(grpo_run, dataset):
    out, recorder, requests = grpo_run
    steps = journal(out)
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["completions"] == 4 for s in steps)
    rows = rows_by_id(dataset)
    for step in steps:
        for answer in step["answers"]:
            expected, bodies = regraded(answer, rows[answer["combination"]], recorder)
            assert sorted(body["seed"] for body in bodies) == [0, 1]  # one request per grader run
            assert answer["reward"] == (0.0 if expected is None else pytest.approx(expected)), answer
        assert step["reward"] == pytest.approx(sum(a["reward"] for a in step["answers"]) / 4)
    record = json.loads((out / "skillmix_train.json").read_text())["record"]
    # exactly one request per completion per grader run, none sent twice (the cache answers a repeat)
    assert len(requests) == 3 * 4 * 2 - record["extra"]["judge_cached"] == len({r.key for r in requests})
    assert record["steps"] == 3 and record["method"] == "grpo" and record["extra"]["stopped"] is None
    assert "heldout_skill_in_prompt" in record["leakage"][-1]["checks"]
    # the components reach the trainer's log, step by step
    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "judge/full_marks" in entry]
    for name in ("full_marks", "skill_fraction", "ungradable", "reward"):
        key = "reward" if name == "reward" else f"judge/{name}"
        assert [entry[key] for entry in logged] == pytest.approx([s[name] for s in steps]), name


def test_an_ungradable_answer_earns_zero_and_is_counted(grpo_run):
    out, recorder, _ = grpo_run
    steps = journal(out)
    ungradable = [a for s in steps for a in s["answers"] if a["ungradable"]]
    assert ungradable, "the fake judge failed no answer: pick other hashes"
    assert all(
        a["reward"] == 0.0 and a["points"] is None and a["reason"].startswith("grading:") for a in ungradable
    )
    assert [s["ungradable"] for s in steps] == [sum(a["ungradable"] for a in s["answers"]) for s in steps]
    record = json.loads((out / "skillmix_train.json").read_text())["record"]
    assert record["extra"]["ungradable"] == len(ungradable)
    replies = [reply for _, reply in recorder.seen]
    assert any(isinstance(r, Reply) for r in replies) and "I would rather not grade this text." in replies


@pytest.mark.slow  # two training runs; the default suite is near its 20-minute budget
def test_the_judges_cap_stops_training_cleanly_and_a_higher_cap_resumes(
    dataset, tmp_path, capsys, one_torch_thread
):
    from skillmix.training.reward import usd

    prices = tmp_path / "prices.yaml"
    prices.write_text(
        f"{JUDGE}: {{input: 0, output: 1000}}\n"
    )  # $0.001 a reply token: $0.40 a request at most
    out = tmp_path / "capped"
    step_worst = 4 * 2 * 400 * 1000 / 1e6  # completions x grader runs x max_tokens x price: $3.20
    with FakeOpenAIServer(responder=SkillMixResponder(seed=3), model=JUDGE) as server:
        flags = judge_flags(server, out, dataset, "--grpo-judge-prices", str(prices))
        code, lines = train([*flags, "--grpo-judge-max-usd", f"{step_worst + 0.1:.2f}"], capsys)
        assert len(chat_requests(server)) == 8  # one step's grading, then none
        record = json.loads((out / "skillmix_train.json").read_text())["record"]
        spent = record["extra"]["judge_spent_usd"]
        assert code == 0 and 0 < spent <= step_worst + 0.1
        line = (
            f"skillmix: stopped at step 1: step 2's grading does not fit under the judge's spending cap "
            f"$3.30: its worst case is $3.20, {usd(3.30 - spent)} is left (spent {usd(spent)})"
        )
        assert line in lines and record["extra"]["stopped"] == line.removeprefix("skillmix: ")
        state = json.loads((out / "checkpoint-1" / "trainer_state.json").read_text())
        assert state["global_step"] == 1 and (out / "checkpoint-1" / "optimizer.pt").is_file()

        code, lines = train([*flags, "--grpo-judge-max-usd", "100", "--max-steps", "2"], capsys)
        assert code == 0 and f"skillmix: resuming from {out / 'checkpoint-1'}" in lines
        assert [s["step"] for s in journal(out)] == [1, 2] and len(chat_requests(server)) == 16


def poison(dataset: Path, folder: Path) -> str:
    """A copy of the dataset with a held-out skill composed into a k2 row; returns the row's id."""
    from skillmix.catalog import load_catalog

    shutil.copytree(dataset, folder, ignore=shutil.ignore_patterns(".skillmix"))
    path = folder / "k2" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["skills"] = [rows[0]["skills"][0], load_catalog().split(0).heldout_skills[0].name]
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
    return rows[0]["id"]


def test_a_held_out_skill_in_the_prompts_is_refused_before_step_0(dataset, tmp_path, capsys):
    from skillmix.catalog import load_catalog
    from skillmix.training.config import DatasetSource, EvaluationSet
    from skillmix.training.data import LoadedSource
    from skillmix.training.leakage import LeakageError, check_prompts

    row_id = poison(dataset, tmp_path / "poisoned")
    out = tmp_path / "never"
    with FakeOpenAIServer(responder=SkillMixResponder(), model=JUDGE) as server:
        code, lines = train(judge_flags(server, out, tmp_path / "poisoned"), capsys)
        assert server.requests == []  # not even the judge's models were asked for
    assert code == 2 and len(lines) == 1 and lines[0].startswith("skillmix: error: leakage"), lines
    assert "heldout_skill_in_composition" in lines[0] and row_id in lines[0]
    assert not out.exists()
    # the prompts' own audit: no held-out skill even alone (a dataset's audit lets D(1) have one)
    manifest = json.loads((dataset / "manifest.json").read_text())
    item = LoadedSource(DatasetSource(path=str(dataset)), manifest)
    name = load_catalog().split(0).heldout_skills[0].name
    prompt = {"id": "p1", "k": 1, "skills": [name], "topic": load_catalog().split(0).training_topics[0]}
    with pytest.raises(LeakageError, match=r"heldout_skill_in_prompt: 1 row\(s\): p1"):
        check_prompts(item, [prompt], EvaluationSet())


def test_plan_prints_the_judges_requests_per_step(capsys, tmp_path):
    from skillmix.training.cli import main
    from skillmix.training.config import build_config
    from skillmix.training.plan import judge_requests_per_step

    out = tmp_path / "never"
    argv = ["--config", GRPO, "--plan", "--output-dir", str(out), "--grpo-judge-model", "gpt-4o-mini",
            "--grpo-judge-grader-runs", "3"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["method: grpo", "steps: 4"]
    assert "judge requests per step: 12 = 4 completions x 3 grader runs" in lines
    assert any(
        line.startswith("judge worst case: $") and "for 4 steps (gpt-4o-mini)" in line for line in lines
    )
    assert not out.exists()
    config = build_config(GRPO, {"grpo": {"judge": {"grader_runs": 3}}})
    assert judge_requests_per_step(config) == 12
    wider = build_config(GRPO, {"training": {"effective_batch_size": 16}})  # 4 per device x 4 accumulation
    assert judge_requests_per_step(wider) == 16 * 2 and judge_requests_per_step(wider, processes=2) == 16 * 2
    assert judge_requests_per_step(build_config("tiny/smoke")) == 0
    assert main(["--config", "tiny/smoke", "--plan", "--output-dir", str(out)]) == 0
    assert "judge requests per step: 0" in capsys.readouterr().out
