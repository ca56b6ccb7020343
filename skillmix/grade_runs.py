"""One answer graded by the judge ``runs`` times: the rule every grader of an answer shares.

The rule, written once here:

* **the request**: one user message, the rubric prompt of the run's ``grader_format``
  (:meth:`skillmix.prompts.PromptSet.grader`) rendered from the answer, the combination's skills (records
  or :class:`~skillmix.skills.Skill`) and its topic (:func:`grader_messages`);
* **the seeds**: run ``i`` is seeded ``seed + i``, every run unseeded when ``seed`` is None
  (:func:`run_seed`);
* **one run's fields** (:func:`read_run`): a reply whose status is ``ok`` is parsed by
  :func:`skillmix.grading.parse_grade`; its points when it reads, else the status ``unparseable`` with the
  parser's error; any other status (the sender's: ``refused``, ``api_error``, ``budget``, ... see
  :mod:`skillmix.statuses`) is kept with its error and no points;
* **the record** (:data:`GRADE_FIELDS`): ``grader_outputs``, ``grader_points``, ``grader_status`` and
  ``grader_errors``, one entry per run in run order (:func:`fields_of`).

Who sends is the caller's: :func:`grade_answer_runs` takes ``send(messages, seed)``, an async callable that
returns ``(text or None, status, error)``, so that the cross-judge (``skillmix.evaluation.crossjudge``, an
experiment's second judge) sends through skillmix's :class:`~skillmix.llm.client.LLMClient` and the inspect
task through its ``grader`` model role. The pipeline's judge (``skillmix.pipelines.tasks.GradeText``)
sends through distilabel, one row's runs as its generations, and shares the request
(:func:`grader_messages`) and one run's fields (:func:`read_run`); a generation that is not graded carries
:func:`skip_reason` (:func:`skipped_runs`: its record). GRPO's judge (``skillmix.training.reward``) sends
through its own client under the step's reservation, and shares the request, the seeds and one run's
fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from skillmix.grading import parse_grade

if TYPE_CHECKING:
    from skillmix.prompts import PromptSet

GRADE_FIELDS: tuple[str, ...] = ("grader_outputs", "grader_points", "grader_status", "grader_errors")
# One run: the grader's output, its points (None unless it parsed), its status and error.
RunFields = tuple[str | None, list[int] | None, str, str | None]
# send(messages, seed) -> (text or None, status, error): one grader request, the caller's client.
Send = Callable[[list[dict[str, str]], int | None], Awaitable[tuple[str | None, str, str | None]]]


def grader_messages(
    prompts: PromptSet, skills: Sequence[Any], topic: str, answer: str, grader_format: str
) -> list[dict[str, str]]:
    """The grader request of one answer: the rubric prompt of ``grader_format`` as one user message."""
    return [{"role": "user", "content": prompts.grader(answer, skills, topic, grader_format)}]


def run_seed(seed: int | None, run: int) -> int | None:
    """Grader run ``run``'s seed: ``seed + run``, None when the judge is unseeded."""
    return None if seed is None else seed + run


def read_run(
    text: str | None, status: str, error: str | None, skills: Sequence[Any], topic: str
) -> RunFields:
    """One run's output, points, status and error: an ``ok`` reply parsed (``unparseable`` with the
    parser's error when it does not read), any other status kept as the sender gave it."""
    points = None
    if status == "ok":
        grade = parse_grade(text, skills, topic)
        points = grade.points
        if not grade.ok:
            status, error = "unparseable", grade.error
    return text, points, status, error


def fields_of(runs: Sequence[RunFields]) -> dict[str, list[Any]]:
    """The record of an answer's runs: each of :data:`GRADE_FIELDS` as a list in run order."""
    return {key: [run[i] for run in runs] for i, key in enumerate(GRADE_FIELDS)}


def skip_reason(round2_status: str, round2_error: str | None) -> str:
    """Why a generation is not graded (its round 2 did not end ``ok``): each run's error."""
    return f"generation {round2_status}: {round2_error}"


def skipped_runs(round2_status: str, round2_error: str | None, runs: int) -> dict[str, list[Any]]:
    """The record of a generation no judge sees: ``runs`` runs ``skipped``, no output, no points, each
    with :func:`skip_reason` (as the pipeline's judge records the generations it sends nothing for)."""
    return fields_of([(None, None, "skipped", skip_reason(round2_status, round2_error))] * runs)


async def grade_answer_runs(
    send: Send,
    prompts: PromptSet,
    skills: Sequence[Any],
    topic: str,
    answer: str,
    grader_format: str,
    runs: int,
    seed: int | None,
) -> dict[str, list[Any]]:
    """Grade ``answer`` ``runs`` times through ``send`` (the runs concurrently, run ``i`` seeded
    :func:`run_seed`), each read by :func:`read_run`: the record of :data:`GRADE_FIELDS`. What ``send``
    raises is raised (after the other runs were started)."""
    messages = grader_messages(prompts, skills, topic, answer, grader_format)
    replies = await asyncio.gather(*(send(messages, run_seed(seed, i)) for i in range(runs)))
    return fields_of([read_run(text, status, error, skills, topic) for text, status, error in replies])
