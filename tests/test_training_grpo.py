"""GRPO with the Skill-Mix judge as the reward, on CPU and offline: a tiny random student, a tiny dataset
built by the pipeline against the fake OpenAI server, and the fake server as the judge, whose every answer the
test records and grades again on its own (parse, vote, the text checks, the metrics) to check the rewards;
a judge that fails some requests (no reward, counted, left out of the logged means), identical answers graded
once, the judge's spending cap, a poisoned prompt set and ``--plan``. (Several processes: test_training_ddp.)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ddp_probe import ending_generation

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
    """The fake judge: a grade of the SkillMixResponder, except for runs whose hash picks a server failure
    (HTTP 500: the infrastructure's, an ``api_error`` with no retry left), a refused request (HTTP 400: the
    request's, it loses its vote) or an answer no parser reads; every (request, reply) is kept."""

    def __init__(self) -> None:
        self.grader = SkillMixResponder(seed=3, accept_rate=0.6)
        self.seen: list[tuple[dict, Reply | str]] = []
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> Reply | str:
        graded = GRADED.search(last_user_message(body)).group(1)
        pick = hashlib.sha256(f"{graded}\n{body.get('seed')}".encode()).digest()[0] % 6  # per grader run
        if pick == 0:
            reply: Reply | str = Reply(status=500, content="the server is out of order")
        elif pick == 2:
            reply = Reply(status=400, content="the request could not be processed")
        elif pick == 1:
            reply = "I would rather not grade this text."
        else:
            reply = self.grader(body)
        with self._lock:
            self.seen.append((body, reply))
        return reply


@contextlib.contextmanager
def ending_students():
    """The tiny random student ends its answers after a few tokens (:func:`ddp_probe.ending_generation`):
    graded, not cut at the length limit."""
    from skillmix.training import grpo

    original = grpo.make_trainer

    def make_trainer(prepared, reward, callbacks):
        prepared.args.generation_kwargs = ending_generation(prepared.tokenizer)
        return original(prepared, reward, callbacks)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpo, "make_trainer", make_trainer)
        yield


def train(argv: list[str], capsys) -> tuple[int, list[str]]:
    """``skillmix train`` in this process (the student ends its answers); its ``skillmix:`` lines."""
    from skillmix.training.cli import main

    capsys.readouterr()
    with ending_students():
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

    more = ["--max-steps", "3", "--save-steps", "3", "--grpo-judge-max-retries", "0",
            "--grpo-judge-max-ungraded-share", "1"]  # fmt: skip
    with FakeOpenAIServer(responder=recorder, model=JUDGE) as server, ending_students():
        code = main(judge_flags(server, out, dataset, *more))
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
    """The reward of one answer from the judge's recorded replies, by the test's own reading: no reward when
    the server failed a run (HTTP 500), else every run parsed (a refused request or an unread answer does not
    vote; none parsed: 0), a strict majority, the length point of the sentence counter, no point for a named
    skill, then (full marks + skill fraction) / 2."""
    from skillmix.catalog import load_catalog
    from skillmix.grading import parse_grade
    from skillmix.metrics import score
    from skillmix.prompts import PromptSet
    from skillmix.rules import ScoringRules

    catalog = load_catalog()
    skills = [catalog.skill(name) for name in row["skills"]]
    prompt = PromptSet().grader(answer["answer"], skills, row["topic"])
    runs = [(body, reply) for body, reply in recorder.seen if last_user_message(body) == prompt]
    if any(isinstance(reply, Reply) and reply.status == 500 for _, reply in runs):
        return None, [body for body, _ in runs]
    points = []
    for _, reply in runs:
        grade = parse_grade(reply, skills, row["topic"]) if isinstance(reply, str) else None
        points.append(grade.points if grade is not None and grade.ok else [float("nan")] * (len(skills) + 3))
    if all(p[0] != p[0] for p in points):  # NaN: no run parsed
        return 0.0, [body for body, _ in runs]
    rules = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")
    metrics = score(points, len(skills), rules, answer["answer"], skills)
    return (metrics["full_marks"] + metrics["skill_fraction"]) / 2, [body for body, _ in runs]


def test_rewards_are_the_points_the_judge_served_one_request_per_completion_and_run(grpo_run, dataset):
    out, recorder, requests = grpo_run
    steps = journal(out)
    assert [s["step"] for s in steps] == [1, 2, 3] and all(s["completions"] == 4 for s in steps)
    outcomes = [a["outcome"] for s in steps for a in s["answers"]]
    assert outcomes.count("graded") >= 4 and "truncated" not in outcomes, outcomes  # the student ends answers
    rows = rows_by_id(dataset)
    for step in steps:
        for answer in step["answers"]:
            if answer["outcome"] in ("truncated", "empty"):  # the model's: 0, nothing sent
                assert answer["reward"] == 0.0
                continue
            expected, bodies = regraded(answer, rows[answer["combination"]], recorder)
            assert {body["seed"] for body in bodies} == {0, 1}  # one request per grader run
            assert answer["reward"] == (None if expected is None else pytest.approx(expected)), answer
        rewarded = [a["reward"] for a in step["answers"] if a["reward"] is not None]
        assert step["reward"] == (pytest.approx(sum(rewarded) / len(rewarded)) if rewarded else None)
    record = json.loads((out / "skillmix_train.json").read_text())["record"]
    # every request sent is counted, and none answered was sent twice (the cache answers a repeat; a server
    # failure is not cached: a later step's identical answer would send it again)
    assert len(requests) == record["extra"]["judge_requests"] > 0
    answered = [r for r in requests if r.status == 200]
    assert len(answered) == len({r.key for r in answered})
    assert record["steps"] == 3 and record["method"] == "grpo" and record["extra"]["stopped"] is None
    assert "heldout_skill_in_prompt" in record["leakage"][-1]["checks"]


def test_a_failed_grading_has_no_reward_is_counted_and_left_out_of_the_logged_means(grpo_run):
    out, recorder, _ = grpo_run
    steps = journal(out)
    answers = [a for s in steps for a in s["answers"]]
    ungraded = [a for a in answers if a["outcome"] == "ungraded"]
    unparseable = [a for a in answers if a["outcome"] == "unparseable"]
    assert ungraded and unparseable, "the fake judge failed no answer: pick other hashes"
    assert all(
        a["reward"] is None for a in ungraded
    )  # a run the server failed: the vote is not the protocol's
    assert all(
        a["reward"] == 0.0 and a["reason"].startswith("grading:") for a in unparseable
    )  # the rule: zero
    assert [s["ungraded"] for s in steps] == [
        sum(a["outcome"] == "ungraded" for a in s["answers"]) for s in steps
    ]
    record = json.loads((out / "skillmix_train.json").read_text())["record"]
    assert record["extra"]["ungraded"] == len(ungraded) and record["extra"]["unparseable"] == len(unparseable)
    assert record["extra"]["completions"] == len(answers) == 12
    replies = [reply for _, reply in recorder.seen]
    assert {r.status for r in replies if isinstance(r, Reply)} == {400, 500}
    assert "I would rather not grade this text." in replies
    # the trainer's log, step by step: TRL's reward over the rewarded completions only, skillmix's
    # components over all but the ungraded, and the ungraded share
    history = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "judge/ungraded" in entry]
    assert len(logged) == 3
    for entry, step in zip(logged, steps, strict=True):
        counted = [a for a in step["answers"] if a["outcome"] != "ungraded"]
        rewarded = [a["reward"] for a in step["answers"] if a["reward"] is not None]
        assert entry["judge/ungraded"] == pytest.approx(step["ungraded"] / 4)
        if rewarded:
            assert entry["reward"] == pytest.approx(sum(rewarded) / len(rewarded))
        else:
            assert entry["reward"] != entry["reward"]  # NaN: nothing was rewarded
        if counted:
            assert entry["judge/full_marks"] == pytest.approx(step["full_marks"])
            assert entry["judge/skill_fraction"] == pytest.approx(step["skill_fraction"])


@pytest.mark.slow  # a training run of its own: 9.5 s on a busy 2-core machine
def test_a_judge_outage_stops_the_run_at_its_share_of_ungraded_completions(dataset, tmp_path, capsys):
    out = tmp_path / "outage"
    down = lambda body: Reply(status=503, content="the judge is down")  # noqa: E731
    with FakeOpenAIServer(responder=down, model=JUDGE) as server:
        flags = judge_flags(server, out, dataset, "--grpo-judge-max-retries", "0")
        code, lines = train(flags, capsys)
        assert len(chat_requests(server)) == 4 * 2  # step 1's requests, then none
    line = (
        "skillmix: stopped at step 1: 4 of step 1's 4 completions (100%, all processes) could not be graded "
        "(the judge's server failed them after the retries), more than grpo.judge.max_ungraded_share 10%"
    )
    assert code == 0 and line in lines, lines
    record = json.loads((out / "skillmix_train.json").read_text())["record"]
    assert (
        record["steps"] == 1
        and record["extra"]["ungraded"] == 4
        and record["extra"]["stop"]["kind"] == "ungraded"
    )
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    assert [a["reward"] for a in journal(out)[0]["answers"]] == [None] * 4
    assert (
        "stopped after 1 of 4 steps: too many completions could not be graded"
        in (out / "README.md").read_text()
    )


def test_identical_answers_of_a_step_cost_one_request_per_grader_run_and_a_cut_one_none(tmp_path):
    import asyncio

    from skillmix.catalog import load_catalog
    from skillmix.llm.prices import PriceTable
    from skillmix.llm.roles import resolve_judge
    from skillmix.rules import DEFAULT_RULES
    from skillmix.training.method_settings import JudgeSettings
    from skillmix.training.reward import Combination, Judge, JudgeReward

    catalog = load_catalog()
    split = catalog.split(0)
    combination = Combination("c1", tuple(split.training_skills[:2]), split.training_topics[0])
    with FakeOpenAIServer(responder=SkillMixResponder(seed=3), model=JUDGE) as server:
        settings = JudgeSettings(model=JUDGE, base_url=server.base_url, grader_runs=3)
        model = resolve_judge(settings, None, "")
        judge = Judge(settings, model, tmp_path / "cache.sqlite", PriceTable.load(None), DEFAULT_RULES)
        reward = JudgeReward(judge, [combination], "mean", tmp_path / "rewards.jsonl", limit=4, ends=[2, 0])
        state = type("State", (), {"global_step": 0})()
        same, other = "A stitch in time saves nine.", "Two knots hold the needle."
        texts = (same, other, same, same, "A stitch cut short at the")
        completions = [[{"role": "assistant", "content": text}] for text in texts]
        ids = [[7, 9, 2], [8, 2], [7, 9, 2], [7, 9, 2], [5, 6, 7, 8]]  # the last reached 4 with no end (2)
        rewards = asyncio.run(
            reward(
                ["p"] * 5,
                completions,
                ["c1"] * 5,
                completion_ids=ids,
                trainer_state=state,
                log_metric=lambda *_: None,
            )
        )
        assert (
            len(chat_requests(server)) == 2 * 3
        )  # two distinct answers x three grader runs, the cut one none
        assert sorted(r.body["seed"] for r in chat_requests(server)) == [0, 0, 1, 1, 2, 2]
    assert rewards[0] == rewards[2] == rewards[3] is not None and rewards[4] == 0.0
    assert reward.take_counts() == {"completions": 5, "ungraded": 0, "unparseable": 0, "truncated": 1,
                                    "requests_sent": 6, "cached": 0}  # fmt: skip
    assert reward.take_counts()["completions"] == 0  # taken


def test_several_grader_runs_need_a_seed(tmp_path):
    import yaml

    from skillmix.config import ConfigError
    from skillmix.training.config import build_config, resolve_recipe

    data = yaml.safe_load(resolve_recipe(GRPO).read_text())
    data["grpo"]["judge"]["seed"] = None
    recipe = tmp_path / "unseeded.yaml"
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="grader_runs 2 needs a seed"):
        build_config(recipe)
    data["grpo"]["judge"]["grader_runs"] = 1  # one run: nothing to tell apart
    recipe.write_text(yaml.safe_dump(data))
    assert build_config(recipe).grpo.judge.seed is None


@pytest.mark.slow  # two training runs; the default suite is near its 20-minute budget
def test_the_judges_cap_stops_training_cleanly_and_a_higher_cap_resumes(
    dataset, tmp_path, capsys, one_torch_thread
):
    from skillmix.training.card import RunRecord
    from skillmix.training.config import build_config
    from skillmix.training.reward import usd
    from skillmix.training.run import push_message

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

        card = (out / "README.md").read_text()
        assert "stopped at the judge's cap after 1 of 4 steps" in card
        config = build_config(GRPO, data_location=str(dataset))
        assert push_message(config, RunRecord(**record)) == (
            "Fine-tuned on Skill-Mix (GRPO, 1 steps); stopped at the judge's cap after 1 of 4 steps"
        )

        code, lines = train([*flags, "--grpo-judge-max-usd", "100", "--max-steps", "2"], capsys)
        assert code == 0 and f"skillmix: resuming from {out / 'checkpoint-1'}" in lines
        assert [s["step"] for s in journal(out)] == [1, 2] and len(chat_requests(server)) == 16
        assert "stopped" not in (out / "README.md").read_text()

        # the launch's first step is decided before train(): a cap it does not fit trains nothing
        spent = json.loads((out / "skillmix_train.json").read_text())["record"]["extra"]["judge_spent_usd"]
        code, lines = train([*flags, "--grpo-judge-max-usd", f"{spent + 1:.2f}", "--max-steps", "3"], capsys)
        assert code == 0 and len(chat_requests(server)) == 16  # nothing sent
        record = json.loads((out / "skillmix_train.json").read_text())["record"]
        assert record["steps"] == 1 and record["extra"]["stop"]["kind"] == "cap"  # resumed at checkpoint-1
        assert lines[-1].startswith("skillmix: stopped at step 1: step 2's grading does not fit")


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
