"""The distilabel pieces of the Skill-Mix pipeline: one LLM class and the tasks of each stage.

``SkillMixLLM`` is a distilabel ``AsyncLLM`` over :class:`skillmix.llm.client.LLMClient`. Its
``agenerate`` never raises: each generation it returns is a JSON *envelope* of a
:class:`skillmix.llm.client.Completion` (text, status, error, tokens, cost), which the task's
``format_output`` opens. So one failing request can never blank the
other rows of its batch (distilabel 1.5.3 turns a whole batch into ``None`` when ``agenerate`` raises), and
every row carries its own status. A row whose earlier stage failed is passed through with a *skip* input:
no request is sent and the failure reason travels on.

Tasks follow distilabel's contract (``inputs``, ``outputs``, ``format_input``, ``format_output``); the
prompts come from the Jinja2 templates of :mod:`skillmix.prompts`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any

from distilabel.models.llms.base import AsyncLLM
from distilabel.steps.tasks.base import Task
from pydantic import Field, PrivateAttr

from skillmix.grade_runs import GRADE_FIELDS, RunFields, grader_messages, read_run, skip_reason
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import ClientConfig, Completion, Endpoint, LLMClient, Reservation
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.budget import RowCost
from skillmix.pipelines.interrupt import stop_requested
from skillmix.pipelines.progress import ProgressLog
from skillmix.prompts import PromptSet
from skillmix.text import extract_answer

SKIP = "\x00skillmix-skip\x00"  # a formatted input that asks the LLM to send nothing
ROW_NOTE = "\x00skillmix-row\x00"  # a leading system message: the row's reservation, its seed offset
ENVELOPE = "skillmix_completion"  # the key of the JSON envelope around a Completion


def skip_input(reason: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SKIP + reason}]


def with_row_note(
    messages: list[dict[str, str]], input: dict[str, Any], stage: str, runs: int = 1
) -> list[dict[str, str]]:
    """Prefix what the LLM must know of the row beyond its messages, as a leading system message: its
    reservation under a spending cap (the row's ``worst_usd``, set by the planner) and, for the several
    generations of one combination in an evaluation, the row's ``generation`` (an offset of the seed)."""
    note: dict[str, Any] = {}
    worst = input.get("worst_usd")
    if worst:
        cost = RowCost(**worst)
        note = {
            "row": input["id"],
            "remaining": cost.remaining(stage),
            "request": getattr(cost, stage) / runs,
        }
    if input.get("generation") and stage != "grade":  # the judge's runs differ by their own offsets
        note["seed_offset"] = int(input["generation"])
    if not note:
        return messages
    return [{"role": "system", "content": ROW_NOTE + json.dumps(note)}, *messages]


def take_row_note(messages: Any, run_id: str | None = None) -> tuple[Reservation | None, int, Any]:
    """The reservation and seed offset :func:`with_row_note` put in front of ``messages``, and the messages
    without them.

    The reservation is the row's *in this run* (``run_id``): a reservation left by a run that was killed
    keeps counting as spent, and the row's next run reserves afresh rather than draw on it.
    """
    if messages and str(messages[0].get("content", "")).startswith(ROW_NOTE):
        note = json.loads(messages[0]["content"][len(ROW_NOTE) :])
        reservation = None
        if "row" in note:
            rid = f"{run_id}:{note['row']}" if run_id else note["row"]
            reservation = Reservation(rid, note["remaining"], note["request"], str(note["row"]))
        return reservation, int(note.get("seed_offset", 0)), messages[1:]
    return None, 0, messages


def open_envelope(output: str | None) -> Completion:
    """The Completion inside a generation of :class:`SkillMixLLM`.

    A missing output (distilabel lost it) is an explained error; plain text from another distilabel LLM
    (e.g. the stock ``OpenAILLM``) is taken as an ``ok`` completion, so the tasks work with any LLM.
    """
    if output is None:
        return Completion(None, "api_error", "no output from the LLM step")
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if isinstance(data, dict) and ENVELOPE in data:
        return Completion(**data[ENVELOPE])
    return Completion(output, "ok")


class SkillMixLLM(AsyncLLM):
    """distilabel LLM over skillmix's own client (cache, retries, limits, statuses, costs)."""

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    identity: str | None = None
    cache_path: str | None = None
    prices_path: str | None = None
    free: bool = False
    client_config: dict[str, Any] = Field(default_factory=dict)  # skillmix.llm.client.ClientConfig fields
    stage: str | None = None  # with run_id and progress_path: each finished row is counted for the bars
    run_id: str | None = None
    progress_path: str | None = None
    mode: str = "chat"  # "completion": a base model, sent plain text through /v1/completions
    reply_kind: str = (
        "generation"  # in completion mode, how the reply starts (skillmix.prompts.ANSWER_PREFIXES)
    )
    template_dir: str | None = None
    batch: bool = False  # the role's requests go through its server's batch API

    _client: LLMClient | None = PrivateAttr(default=None)
    _prompts: PromptSet | None = PrivateAttr(default=None)
    _progress: ProgressLog | None = PrivateAttr(default=None)

    def load(self) -> None:
        super().load()
        prices = PriceTable.load(self.prices_path)
        if self.free:
            prices.free.add(self.model)
        self._client = LLMClient(
            Endpoint(self.model, self.base_url, self.api_key_env, self.identity, self.mode),
            ClientConfig(**self.client_config),
            RequestCache(self.cache_path),
            prices,
            stop=functools.partial(stop_requested, self.cache_path and Path(self.cache_path).parent),
            batch=self.batch,
            stage=self.stage,
        )
        if self.progress_path and self.stage and self.run_id:
            self._progress = ProgressLog(self.progress_path)
        if self.mode == "completion":
            self._prompts = PromptSet(self.template_dir)

    @property
    def model_name(self) -> str:
        return self.model

    async def agenerate(  # type: ignore[override]
        self,
        input: Any,
        num_generations: int = 1,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """One envelope per generation; generation i uses ``seed + i`` so repeated runs are distinct."""
        assert self._client is not None, "SkillMixLLM.load() was not called"
        reservation, offset, input = take_row_note(input, self.run_id)
        if seed is not None:
            seed += offset
        if input and str(input[0].get("content", "")).startswith(SKIP):
            reason = input[0]["content"][len(SKIP) :]
            done = [Completion(None, "skipped", reason)] * num_generations
        else:
            plain = self._prompts.plain(input, self.reply_kind) if self._prompts is not None else None
            calls = [
                self._client.complete(
                    input, temperature, max_new_tokens, None if seed is None else seed + i, reservation, plain
                )
                for i in range(num_generations)
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            done = [
                r if isinstance(r, Completion) else Completion(None, "api_error", f"client error: {r!r}")
                for r in results
            ]
        if reservation is not None and (self.stage == "grade" or not any(c.ok for c in done)):
            self._client.cache.release(reservation.id)  # the row sends nothing more
        if self._progress is not None:
            row_status = "ok" if any(c.ok for c in done) else done[0].status
            self._progress.record(self.run_id, self.stage, [row_status])
        return {
            "generations": [json.dumps({ENVELOPE: c.to_dict()}) for c in done],
            "statistics": {
                "input_tokens": [c.input_tokens for c in done],
                "output_tokens": [c.output_tokens for c in done],
            },
        }


class _SkillMixTask(Task):
    """Shared set-up: the prompt templates, and the messages each row was sent.

    A row carries its skills as records (``skill_records``: name, category, definition, example, made once
    from the run's catalog by :func:`skillmix.pipelines.driver.pipeline_row`); the tasks render from them
    and never load a catalog. The conversation stored in a row is the messages that were sent (without
    the row note), in chat form whatever the model's mode, with the replies appended.
    """

    template_dir: str | None = None

    _prompts: PromptSet | None = PrivateAttr(default=None)
    _sent: dict[str, list[dict[str, str]]] = PrivateAttr(default_factory=dict)

    def load(self) -> None:
        super().load()
        self._prompts = PromptSet(self.template_dir)

    def skills_of(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return input["skill_records"]

    def send(self, input: dict[str, Any], messages: list[dict[str, str]], stage: str) -> list[dict[str, str]]:
        """``messages`` as the request of ``stage``, remembered as what the row was sent."""
        self._sent[input["id"]] = messages
        return with_row_note(messages, input, stage)

    def conversation(self, input: dict[str, Any] | None, reply: str | None) -> list[dict[str, str]]:
        """What the row was sent at this stage, and the reply; the row's conversation so far when nothing
        was sent (a skipped stage)."""
        sent = self._sent.pop(input["id"], None) if input is not None else None
        if sent is None:
            return list((input or {}).get("conversation") or [])
        return [*sent, {"role": "assistant", "content": reply}] if reply is not None else sent

    @property
    def prompts(self) -> PromptSet:
        assert self._prompts is not None, "task not loaded"
        return self._prompts


def generation_status(c: Completion) -> tuple[str, str | None]:
    """A generation's status: the client's, or ``truncated`` for a reply cut at ``max_tokens``."""
    if c.ok and c.finish_reason == "length":
        return "truncated", "the reply was cut at max_tokens (finish reason: length)"
    return c.status, c.error


def _usage(c: Completion) -> dict[str, Any]:
    """A request's tokens and what it cost when it was paid (by this run, or by the one the cache keeps)."""
    return {"input_tokens": c.input_tokens, "output_tokens": c.output_tokens, "usd": c.paid_usd}


class GenerateRound1(_SkillMixTask):
    """Round 1: a minimal natural text on the topic showing all k skills."""

    @property
    def inputs(self) -> list[str]:
        return ["skill_records", "topic"]

    @property
    def outputs(self) -> list[str]:
        return ["round1", "round1_status", "round1_error", "round1_usage", "conversation"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        return self.send(input, self.prompts.conversation(self.skills_of(input), input["topic"]), "round1")

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        c = open_envelope(output)
        conversation = self.conversation(input, c.text)
        status, error = generation_status(c)
        return {
            "conversation": conversation if c.text is not None else [],
            "round1": c.text,
            "round1_status": status,
            "round1_error": error,
            "round1_usage": _usage(c),
        }


class GenerateRound2(_SkillMixTask):
    """Round 2, same conversation: improve the text within max(1, k-1) sentences; extract the answer."""

    @property
    def inputs(self) -> list[str]:
        return ["skill_records", "topic", "conversation", "round1_status", "round1_error"]

    @property
    def outputs(self) -> list[str]:
        return ["round2", "round2_status", "round2_error", "round2_usage", "answer", "conversation"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        if input["round1_status"] != "ok":
            reason = f"round 1 {input['round1_status']}: {input['round1_error']}"
            return with_row_note(skip_input(reason), input, "round2")
        round2 = self.prompts.round2(len(self.skills_of(input)), input["topic"])
        return self.send(input, [*input["conversation"], {"role": "user", "content": round2}], "round2")

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        c = open_envelope(output)
        answer = extract_answer(c.text) if c.ok else None
        status, error = generation_status(c)
        if status == "ok" and answer is None:
            status, error = "unparseable", "no text after 'Answer:' in the round-2 reply"
        return {
            "conversation": self.conversation(input, c.text),
            "round2": c.text,
            "round2_status": status,
            "round2_error": error,
            "round2_usage": _usage(c),
            "answer": answer,
        }


class GradeText(_SkillMixTask):
    """The judge: k+3 rubric points, ``num_generations`` runs per text, each parsed or marked unparseable
    (the request and one run's fields by the judge's rule, :mod:`skillmix.grade_runs`; distilabel sends)."""

    grader_format: str = "table"

    @property
    def inputs(self) -> list[str]:
        return ["skill_records", "topic", "answer", "round2_status", "round2_error"]

    @property
    def outputs(self) -> list[str]:
        return ["grader_outputs", "grader_points", "grader_status", "grader_errors", "grader_usage"]

    def format_input(self, input: dict[str, Any]) -> list[dict[str, str]]:
        if input["round2_status"] != "ok":
            messages = skip_input(skip_reason(input["round2_status"], input["round2_error"]))
        else:
            skills, topic = self.skills_of(input), input["topic"]
            messages = grader_messages(self.prompts, skills, topic, input["answer"], self.grader_format)
        return with_row_note(messages, input, "grade", self.num_generations)

    def format_output(self, output: str | None, input: dict[str, Any] | None = None) -> dict[str, Any]:
        """One run (a generation of the row), read by :func:`skillmix.grade_runs.read_run`."""
        c = open_envelope(output)
        run: RunFields = (c.text, None, c.status, c.error)  # no row: nothing to parse against
        if input is not None:
            run = read_run(c.text, c.status, c.error, self.skills_of(input), input["topic"])
        return {**dict(zip(GRADE_FIELDS, run, strict=True)), "grader_usage": _usage(c)}
