"""The judge's rule for one answer, written once (skillmix.grade_runs): the request, the seeds per run, each
run read clean, unparseable or failed, and the pipeline's judge reading its generations by the same rule."""

from __future__ import annotations

import asyncio
import json

import pytest

from skillmix.grade_runs import GRADE_FIELDS, grade_answer_runs, grader_messages, read_run, skipped_runs
from skillmix.grading import rubric_items
from skillmix.prompts import PromptSet
from skillmix.sampling import sample_combinations

ANSWER = "The seam confessed, stitch by stitch, that it had always loved the hem."
POINTS = [1, 0, 1, 1, 1, 0]
NOT_A_GRADE = "I would rather not grade this text."


@pytest.fixture(scope="module")
def combo(builtin):
    return sample_combinations(builtin, 3, 1, seed=11)[0]


@pytest.fixture(scope="module")
def records(combo):
    """The skills as the pipeline's rows, the inspect task and the cross-judge carry them."""
    return [skill.to_dict() for skill in combo.skills]


def table(combo, points):
    items = rubric_items(combo.skills, combo.topic)
    rows = "".join(f"| {item} | {p} |\n" for item, p in zip(items, points, strict=True))
    return f"| Criteria | Points Earned |\n|---|---|\n{rows}| Total Points Earned | {sum(points)} |\n"


class Judge:
    """A sender that answers each run from ``replies`` (by run, the run read off its seed) and records what
    it was sent."""

    def __init__(self, replies, first_seed=None):
        self.replies, self.first_seed, self.sent = replies, first_seed, []

    async def __call__(self, messages, seed):
        self.sent.append((messages, seed))
        run = len(self.sent) - 1 if self.first_seed is None else seed - self.first_seed
        await asyncio.sleep(0.01 * (len(self.replies) - run))  # the runs end out of order
        return self.replies[run]


def test_clean_unparseable_and_failed_runs_each_seeded_seed_plus_run(combo, records):
    clean = table(combo, POINTS)
    judge = Judge([(clean, "ok", None), (NOT_A_GRADE, "ok", None), (None, "api_error", "HTTP 503")], 40)
    record = asyncio.run(
        grade_answer_runs(judge, PromptSet(), records, combo.topic, ANSWER, "table", 3, seed=40)
    )
    assert sorted(seed for _, seed in judge.sent) == [40, 41, 42]
    prompt = PromptSet().grader(ANSWER, records, combo.topic, "table")
    assert all(messages == [{"role": "user", "content": prompt}] for messages, _ in judge.sent)
    assert list(record) == list(GRADE_FIELDS)
    assert record["grader_outputs"] == [clean, NOT_A_GRADE, None]
    assert record["grader_points"] == [POINTS, None, None]
    assert record["grader_status"] == ["ok", "unparseable", "api_error"]
    assert record["grader_errors"][0] is None and record["grader_errors"][2] == "HTTP 503"
    assert record["grader_errors"][1] == "no rubric table, JSON or point lines found"


def test_an_unseeded_judge_sends_every_run_unseeded_in_its_format(combo, records):
    judge = Judge([(None, "refused", "content filter")] * 2)
    record = asyncio.run(grade_answer_runs(judge, PromptSet(), records, combo.topic, ANSWER, "json", 2, None))
    assert [seed for _, seed in judge.sent] == [None, None]
    assert judge.sent[0][0] == grader_messages(PromptSet(), records, combo.topic, ANSWER, "json")
    assert '"criteria"' in judge.sent[0][0][0]["content"]
    assert record == {"grader_outputs": [None, None], "grader_points": [None, None],
                      "grader_status": ["refused", "refused"],
                      "grader_errors": ["content filter", "content filter"]}  # fmt: skip


def test_a_sender_that_raises_raises_and_a_truncated_grade_reads_as_far_as_it_goes(combo, records):
    async def broken(messages, seed):
        raise RuntimeError("grader: connection reset")

    with pytest.raises(RuntimeError, match="connection reset"):
        asyncio.run(grade_answer_runs(broken, PromptSet(), records, combo.topic, ANSWER, "table", 2, 0))
    cut = table(combo, POINTS).rsplit("| Total", 1)[0]  # the total row lost at max_tokens: still a grade
    assert read_run(cut, "ok", None, records, combo.topic) == (cut, POINTS, "ok", None)
    half = "\n".join(table(combo, POINTS).split("\n")[:5])  # the header and three of six rows
    text, points, status, error = read_run(half, "ok", None, records, combo.topic)
    assert (text, points, status) == (half, None, "unparseable") and "missing rubric rows" in error


def test_a_generation_no_judge_sees_is_skipped_on_every_run():
    assert skipped_runs("refused", "content filter", 2) == {
        "grader_outputs": [None, None],
        "grader_points": [None, None],
        "grader_status": ["skipped", "skipped"],
        "grader_errors": ["generation refused: content filter"] * 2,
    }


def test_the_pipelines_judge_reads_its_generations_by_the_same_rule(combo, records):
    from skillmix.llm.client import Completion
    from skillmix.pipelines.tasks import ENVELOPE, GradeText, SkillMixLLM

    task = GradeText(llm=SkillMixLLM(model="judge"), num_generations=3, name="grade", grader_format="json")
    task.load()
    row = {"id": "r0", "skill_records": records, "topic": combo.topic, "answer": ANSWER,
           "round2_status": "ok", "round2_error": None}  # fmt: skip
    assert task.format_input(row) == grader_messages(task.prompts, records, combo.topic, ANSWER, "json")
    replies = [(table(combo, POINTS), "ok", None), (NOT_A_GRADE, "ok", None), (None, "budget", "cap reached")]
    shared = asyncio.run(
        grade_answer_runs(Judge(replies), task.prompts, records, combo.topic, ANSWER, "json", 3, None)
    )
    outputs = [
        task.format_output(json.dumps({ENVELOPE: Completion(*reply).to_dict()}), row) for reply in replies
    ]
    assert {key: [out[key] for out in outputs] for key in GRADE_FIELDS} == shared
    skipped = {**row, "round2_status": "too_long", "round2_error": "4 sentences > 2"}
    assert task.format_input(skipped)[0]["content"].endswith("generation too_long: 4 sentences > 2")
