"""The judge as the reward of ``skillmix train --method grpo``: the prompts, the grading, the reward.

* :func:`prompt_set`: the combinations (k skills, a topic) of the dataset's kN rows, written as the one-round
  prompt ``one_round.jinja2`` (round 1's challenge with round 2's constraints stated up front: the student
  answers once; the evaluation keeps its two rounds). A k=1 row of a held-out skill (D_SKILL-MIX(1) teaches
  every skill alone, as in 2409.19808) gives no prompt: an RL prompt never shows a held-out skill.
* :class:`Judge`: each answer graded ``grader_runs`` times through skillmix's own client
  (:class:`skillmix.llm.client.LLMClient`: the request cache in the output folder, rate limits, retries,
  prices): the request, the seeds and each run's reading are the judge's rule of :mod:`skillmix.grade_runs`
  (the rubric prompt, ``seed + run``, :func:`skillmix.grading.parse_grade`), the pipeline's and the
  evaluation's; the runs are decided by :func:`grade_answer` (pure: no request), which is
  :func:`skillmix.pipelines.steps.decide_row`, the dataset's own deciding step (majority vote, then the
  text checks of the run's :class:`skillmix.rules.ScoringRules`: the sentence counter's length point, the
  name penalty).
  Identical answers of one step on this process (the same combination and text) are graded once. Under a
  spending cap, the step's grading draws on the reservation that rank 0 made for this process before the
  step (:mod:`.joint_stop`); a request that finds it spent is reserved on its own, or not sent (``budget``).
* :class:`JudgeReward`: TRL's reward function (async, run on the trainer's event loop, on each process
  before TRL gathers the rewards): the reward of a graded answer is its ``full_marks``, its
  ``skill_fraction`` (the protocol's: the share of the k skill points when topic, sense and length are
  earned, else 0) or their ``mean``. What is the model's stays the protocol's: an empty answer, or a
  completion cut at ``max_completion_length``, earns 0 (no request), and one none of whose grader runs
  parsed follows ``grpo.judge.unparseable`` (``zero``: 0; ``drop``: no reward). A completion whose grading
  failed for the infrastructure (``api_error`` after the retries, or not sent under the cap:
  :func:`skillmix.statuses.generation_class` says ``errored`` or ``not run``, as the evaluation does) gets
  no reward (``None``: TRL 1.16 makes it NaN, leaves it out of its group's mean and std, gives it
  advantage 0 and leaves it out of its logged ``reward``); it is counted (``ungraded``). skillmix's own
  components (``judge/full_marks``, ``judge/skill_fraction``) are means over the graded completions of
  every process (one ``log_metric`` value per completion, which TRL averages over processes),
  ``judge/ungraded`` the share of completions not graded; each step's counts and every answer go to
  ``rewards.jsonl`` (rank 0's; ``rewards-rank<R>.jsonl`` for the others).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.grade_runs import fields_of, grader_messages, read_run, run_seed
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import Completion, Endpoint, LLMClient, Reservation
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.llm.roles import ResolvedModel
from skillmix.prompts import PromptSet
from skillmix.rules import ScoringRules
from skillmix.sampling import CombinationKey, combination_key
from skillmix.skills import Skill
from skillmix.statuses import NOT_RUN, generation_class
from skillmix.text import extract_answer, max_sentences, number_word
from skillmix.training.data import LoadedSource
from skillmix.training.method_settings import JudgeSettings

PROMPT_TEMPLATE = "one_round"
JOURNAL = "rewards.jsonl"
CACHE_FILE = "judge-cache.sqlite"


@dataclass(frozen=True)
class Combination:
    """One prompt of the RL set: a dataset row's skills (records of its catalog) and topic."""

    id: str
    skills: tuple[Skill, ...]
    topic: str

    def audit_row(self) -> dict[str, Any]:
        """As the leakage audit reads it (no answer: a prompt names no skill of its own writing)."""
        return {
            "id": self.id,
            "k": len(self.skills),
            "skills": [s.name for s in self.skills],
            "topic": self.topic,
        }


def prompt_set(item: LoadedSource, catalog: Any, heldout: set[str]) -> tuple[list[Combination], int]:
    """The distinct combinations of ``item``'s rows, and how many k=1 rows of a held-out skill gave none."""
    found: dict[CombinationKey, Combination] = {}
    skipped = 0
    for rows in item.rows.values():
        for row in rows:
            names = list(row["skills"])
            if len(names) == 1 and names[0] in heldout:
                skipped += 1
                continue
            try:
                skills = tuple(catalog.skill(name) for name in names)
            except KeyError as exc:
                raise ConfigError(f"dataset {item.source.path}: row {row['id']}: {exc.args[0]}") from None
            found.setdefault(
                combination_key(names, row["topic"]), Combination(str(row["id"]), skills, row["topic"])
            )
    return list(found.values()), skipped


def render_prompt(prompts: PromptSet, combination: Combination, mode: str) -> str:
    """The one-round prompt; in completion mode it ends with ``Answer:``, the continuation is the answer."""
    k = len(combination.skills)
    n = max_sentences(k)
    return prompts.render(
        PROMPT_TEMPLATE,
        skills=list(combination.skills),
        topic=combination.topic,
        k_word=number_word(k),
        n_sentences=n,
        n_word=number_word(n),
        completion=mode == "completion",
    )


def answer_of(completion: Any) -> str:
    """The answer in a completion (text, or chat messages): all of it, or what follows a last ``Answer:``
    and precedes an ``Explanation`` when the student wrote them anyway; empty text is graded too."""
    text = completion if isinstance(completion, str) else "".join(m.get("content") or "" for m in completion)
    return extract_answer(f"Answer: {text}") or ""


@dataclass
class Graded:
    """One answer's grade: the decided points and metrics (:func:`decide_row`), or why there are none;
    ``outcome`` is ``graded``, ``unparseable`` (no grader run parsed: the model's), ``empty`` or
    ``truncated`` (no answer, or cut at the length limit: the model's, not sent) or ``ungraded`` (the
    infrastructure failed it, or the cap did not let it start)."""

    combination: str
    answer: str
    decided: dict[str, Any]
    sent: int  # requests sent (not answered from the cache)
    outcome: str = "graded"

    @property
    def gradable(self) -> bool:
        return self.outcome == "graded"

    def reward(self, kind: str, unparseable: str) -> float | None:
        """The reward under ``kind`` (``grpo.reward``); ``unparseable`` is the rules' (zero or drop)."""
        if self.outcome == "ungraded" or (self.outcome == "unparseable" and unparseable == "drop"):
            return None
        if not self.gradable:
            return 0.0
        full, fraction = float(self.decided["full_marks"]), float(self.decided["skill_fraction"])
        return {"full_marks": full, "skill_fraction": fraction, "mean": (full + fraction) / 2}[kind]


def cap_message(step: int, cap: float, spent: float, worst: float) -> str:
    """Why step ``step`` is not run: what does not fit (its worst case beside what is left under the cap),
    not that the cap "is reached": a cap of $0.02 is far from spent when one step's worst case is $0.28."""
    left = max(0.0, cap - spent)
    return (
        f"step {step}'s grading does not fit under the judge's spending cap {usd(cap)}: its worst case "
        f"is {usd(worst)}, {usd(left)} is left (spent {usd(spent)})"
    )


def usd(value: float) -> str:
    return f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


class Judge:
    """The judge's client and protocol (see the module docstring); ``rules`` are the scoring rules of its
    settings (``ProtocolConfig.scoring_rules``, with the settings' ``unparseable``); ``reservation`` (set
    by :class:`skillmix.training.joint_stop.JointStop` before each step under a cap) names what rank 0
    reserved for this process's next grading."""

    def __init__(
        self,
        settings: JudgeSettings,
        model: ResolvedModel,
        cache: Path,
        prices: PriceTable,
        rules: ScoringRules,
    ) -> None:
        self.settings, self.model, self.prices = settings, model, prices
        self.rules = replace(rules, unparseable=settings.unparseable)
        endpoint = Endpoint(model.model, model.base_url, model.api_key_env, model.identity, model.mode)
        self.client = LLMClient(endpoint, settings.client, RequestCache(cache), prices)
        self.prompts = PromptSet()
        self.reservation: str | None = None

    def requests(self, combination: Combination, answer: str) -> tuple[list[dict[str, str]], Any, float]:
        """The grader request of one answer: messages, the plain prompt (completion mode), its worst case."""
        skills, topic = combination.skills, combination.topic
        messages = grader_messages(self.prompts, skills, topic, answer, self.settings.grader_format)
        plain = None
        if self.model.mode == "completion":
            plain = self.prompts.plain(messages, f"grader_{self.settings.grader_format}")
        bound = token_bound([{"role": "user", "content": plain[0]}] if plain else messages)
        return messages, plain, self.prices.worst_case(self.model.model, bound, self.settings.max_tokens)

    async def grade(self, items: list[tuple[Combination, str]]) -> list[Graded]:
        """Every distinct answer graded ``grader_runs`` times (identical ones once), under the reservation."""
        distinct = list(dict.fromkeys((c.id, answer) for c, answer in items if answer))
        combinations = {c.id: c for c, _ in items}
        done = await asyncio.gather(*(self._runs(combinations[cid], answer) for cid, answer in distinct))
        if self.reservation is not None:
            self.client.cache.release(self.reservation)  # what this step's grading did not draw
            self.reservation = None
        graded = {key: grade_answer(combinations[key[0]], key[1], runs, self.rules)
                  for key, runs in zip(distinct, done, strict=True)}  # fmt: skip
        return [graded[(c.id, a)] if a else model_failure(c, a, "empty") for c, a in items]

    async def _runs(self, combination: Combination, answer: str) -> list[Completion]:
        s = self.settings
        messages, plain, worst = self.requests(combination, answer)
        # drawn from rank 0's reservation; once that is spent, reserved on its own (or refused) by the client
        held = None if self.reservation is None else Reservation(self.reservation, worst, worst)
        calls = [
            self.client.complete(messages, s.temperature, s.max_tokens, run_seed(s.seed, run), held, plain)
            for run in range(s.grader_runs)
        ]
        return list(await asyncio.gather(*calls))


def model_failure(combination: Combination, answer: str, outcome: str) -> Graded:
    """An answer that is the model's failure before any grading: ``empty`` (no text) or ``truncated`` (cut
    at ``max_completion_length``, as the evaluation's ``truncated``): 0 under any rule, nothing sent."""
    reason = {"empty": "answer: empty", "truncated": "answer: cut at max_completion_length"}[outcome]
    decided = {"points": None, "full_marks": 0.0, "skill_fraction": 0.0, "failure_reason": reason}
    return Graded(combination.id, answer, decided, 0, outcome)


def grade_answer(
    combination: Combination, answer: str, runs: Sequence[Completion], rules: ScoringRules
) -> Graded:
    """One answer's grade from the judge's replies (one per grader run): each parsed, then decided by the
    dataset's deciding step under ``rules``; the evaluation's classes say whether it is the
    infrastructure's (``ungraded``). Pure: it sends nothing."""
    from skillmix.pipelines.steps import decide_row  # the dataset's deciding step (distilabel: late)

    graded = fields_of(
        [read_run(c.text, c.status, c.error, combination.skills, combination.topic) for c in runs]
    )
    row = {
        "skills": [skill.name for skill in combination.skills],
        "topic": combination.topic,
        "answer": answer,
        "round1_status": "ok",  # the student's one reply stands for both generation rounds
        "round2_status": "ok",
        **{key: graded[key] for key in ("grader_points", "grader_status", "grader_errors")},
    }
    decided = decide_row(row, rules)
    if generation_class(["ok"], graded["grader_status"]) in ("errored", NOT_RUN):
        outcome = "ungraded"
    else:
        outcome = "graded" if decided["points"] is not None else "unparseable"
    return Graded(
        combination.id, answer, decided, sum(1 for c in runs if not c.cached and c.attempts), outcome
    )


COUNTS = ("completions", "ungraded", "unparseable", "truncated", "requests_sent", "cached")


class JudgeReward:
    """TRL's reward function over :class:`Judge` (see the module docstring); ``journal`` gets each step;
    ``counts`` holds what this process graded since :meth:`take_counts` last took them. A completion of
    ``limit`` tokens whose last is none of ``ends`` (TRL's end-of-sequence and padding ids) was cut at the
    length limit: it earns 0 and is not sent."""

    def __init__(
        self,
        judge: Judge,
        combinations: list[Combination],
        kind: str,
        journal: Path,
        limit: int | None = None,
        ends: Sequence[int] = (),
    ) -> None:
        self.__name__ = "skillmix_judge"  # TRL names the reward's metrics after it
        self.judge, self.kind, self.journal = judge, kind, journal
        self.limit, self.ends = limit, set(ends)
        self.combinations = {c.id: c for c in combinations}
        self.counts = dict.fromkeys(COUNTS, 0)

    async def __call__(
        self, prompts: list[Any], completions: list[Any], combination: list[str], **kwargs: Any
    ) -> list[float | None]:
        step = kwargs["trainer_state"].global_step + 1
        items = [
            (self.combinations[cid], answer_of(c)) for cid, c in zip(combination, completions, strict=True)
        ]
        ids = kwargs.get("completion_ids") or [None] * len(items)
        cut = [self._cut(i) for i in ids]
        cached = self.judge.client.stats["cached"]
        sent = iter(await self.judge.grade([item for item, c in zip(items, cut, strict=True) if not c]))
        graded = [
            model_failure(*item, "truncated") if c else next(sent) for item, c in zip(items, cut, strict=True)
        ]
        rewards = [g.reward(self.kind, self.judge.rules.unparseable) for g in graded]
        summary = step_summary(graded, rewards)
        summary["cached"] = self.judge.client.stats["cached"] - cached
        for name in COUNTS:
            self.counts[name] += summary[name]
        log_metric: Callable[[str, float], None] = kwargs["log_metric"]
        for g in graded:  # one value per completion: TRL's mean over every process is over completions
            log_metric("judge/ungraded", float(g.outcome == "ungraded"))
            if g.outcome != "ungraded":
                log_metric("judge/full_marks", float(g.decided["full_marks"] or 0.0))
                log_metric("judge/skill_fraction", float(g.decided["skill_fraction"] or 0.0))
        self._write(step, graded, rewards, summary)
        return rewards

    def _cut(self, ids: Sequence[int] | None) -> bool:
        return bool(ids) and self.limit is not None and len(ids) >= self.limit and ids[-1] not in self.ends

    def take_counts(self) -> dict[str, int]:
        """This process's counts since the last call (the joint stop sums them over processes)."""
        counts, self.counts = self.counts, dict.fromkeys(COUNTS, 0)
        return counts

    def _write(
        self, step: int, graded: list[Graded], rewards: list[float | None], summary: dict[str, Any]
    ) -> None:
        answers = [
            {
                "combination": g.combination,
                "answer": g.answer,
                "points": g.decided["points"],
                "reward": reward,
                "outcome": g.outcome,
                "reason": g.decided["failure_reason"],
            }
            for g, reward in zip(graded, rewards, strict=True)
        ]
        line = {"step": step, **summary, "spent_usd": self.judge.client.cache.spent_usd(), "answers": answers}
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def step_summary(graded: list[Graded], rewards: list[float | None]) -> dict[str, Any]:
    """The step's counts on this process, and its means over the completions that have a reward
    (``reward``) or a grade that counts (``full_marks``, ``skill_fraction``: all but the ungraded)."""
    rewarded = [r for r in rewards if r is not None]
    counted = [g for g in graded if g.outcome != "ungraded"]
    mean = lambda values: sum(values) / len(values) if values else None  # noqa: E731
    return {
        "completions": len(graded),
        "reward": mean(rewarded),
        "full_marks": mean([g.decided["full_marks"] or 0.0 for g in counted]),
        "skill_fraction": mean([g.decided["skill_fraction"] or 0.0 for g in counted]),
        "ungraded": sum(1 for g in graded if g.outcome == "ungraded"),
        "unparseable": sum(1 for g in graded if g.outcome == "unparseable"),
        "truncated": sum(1 for g in graded if g.outcome == "truncated"),
        "requests_sent": sum(g.sent for g in {id(g): g for g in graded}.values()),
    }
