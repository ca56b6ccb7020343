"""The judge as the reward of ``skillmix train --method grpo``: the prompts, the grading, the reward.

* :func:`prompt_set`: the combinations (k skills, a topic) of the dataset's kN rows, written as the one-round
  prompt ``one_round.jinja2`` (round 1's challenge with round 2's constraints stated up front: the student
  answers once; the evaluation keeps its two rounds). A k=1 row of a held-out skill (D_SKILL-MIX(1) teaches
  every skill alone, as in 2409.19808) gives no prompt: an RL prompt never shows a held-out skill.
* :class:`Judge`: each answer graded ``grader_runs`` times through skillmix's own client
  (:class:`skillmix.llm.client.LLMClient`: the request cache in the output folder, rate limits, retries,
  prices) with the rubric prompts of :class:`skillmix.prompts.PromptSet`, parsed by
  :func:`skillmix.grading.parse_grade` and decided by :func:`grade_answer` (pure: no request), which is
  :func:`skillmix.pipelines.steps.decide_row`, the dataset's own deciding step (majority vote, then the
  text checks of the run's :class:`skillmix.rules.ScoringRules`: the sentence counter's length point, the
  name penalty).
  Under a spending cap, one step's grading is reserved whole at its worst case before anything is sent; a
  step that does not fit raises :class:`JudgeCapReached` and sends nothing.
* :class:`JudgeReward`: TRL's reward function (async, run on the trainer's event loop): the reward of a
  graded answer is its ``full_marks``, its ``skill_fraction`` (the protocol's: the share of the k skill
  points when topic, sense and length are earned, else 0) or their ``mean``; an answer the judge cannot
  grade (no run parsed, or the request failed) earns 0 and is counted, whatever the rules' ``unparseable``
  (the GRPO settings record none, so their rules say ``zero``; leaving such a completion out, a ``None``
  reward that TRL excludes from its group's baseline, is not offered). Each step's means go to the
  trainer's log (``judge/...``) and, with every answer and its points, to ``rewards.jsonl``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.grading import parse_grade
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import Completion, Endpoint, LLMClient, Reservation
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.llm.roles import ResolvedModel
from skillmix.prompts import PromptSet
from skillmix.rules import ScoringRules
from skillmix.sampling import CombinationKey, combination_key
from skillmix.skills import Skill
from skillmix.text import extract_answer, max_sentences, number_word
from skillmix.training.config import JudgeSettings
from skillmix.training.data import LoadedSource

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
    """One answer's grade: the decided points and metrics (:func:`decide_row`), or why there are none."""

    combination: str
    answer: str
    decided: dict[str, Any]
    sent: int  # requests sent (not answered from the cache)

    @property
    def gradable(self) -> bool:
        return self.decided["points"] is not None

    def reward(self, kind: str) -> float:
        if not self.gradable:
            return 0.0
        full, fraction = float(self.decided["full_marks"]), float(self.decided["skill_fraction"])
        return {"full_marks": full, "skill_fraction": fraction, "mean": (full + fraction) / 2}[kind]


class JudgeCapReached(Exception):
    """The next step's grading does not fit under the judge's spending cap: nothing of it was sent.

    The message says what does not fit (the step's worst case beside what is left under the cap), not that
    the cap "is reached": a cap of $0.02 is far from spent when one step's worst case is $0.28."""

    def __init__(self, step: int, cap: float, spent: float, worst: float) -> None:
        left = max(0.0, cap - spent)
        super().__init__(
            f"step {step}'s grading does not fit under the judge's spending cap {usd(cap)}: its worst case "
            f"is {usd(worst)}, {usd(left)} is left (spent {usd(spent)})"
        )
        self.step, self.cap, self.spent, self.worst = step, cap, spent, worst


def usd(value: float) -> str:
    return f"${value:.2f}" if value >= 0.1 else f"${value:.4f}"


class Judge:
    """The judge's client and protocol (see the module docstring); ``run_id`` names its reservations,
    ``rules`` are the scoring rules of its settings (``ProtocolConfig.scoring_rules``)."""

    def __init__(
        self,
        settings: JudgeSettings,
        model: ResolvedModel,
        cache: Path,
        prices: PriceTable,
        run_id: str,
        rules: ScoringRules,
    ) -> None:
        self.settings, self.model, self.prices, self.run_id = settings, model, prices, run_id
        self.rules = rules
        endpoint = Endpoint(model.model, model.base_url, model.api_key_env, model.identity, model.mode)
        self.client = LLMClient(endpoint, settings.client, RequestCache(cache), prices)
        self.prompts = PromptSet()

    def requests(self, combination: Combination, answer: str) -> tuple[list[dict[str, str]], Any, float]:
        """The grader request of one answer: messages, the plain prompt (completion mode), its worst case."""
        text = self.prompts.grader(answer, combination.skills, combination.topic, self.settings.grader_format)
        messages = [{"role": "user", "content": text}]
        plain = None
        if self.model.mode == "completion":
            plain = self.prompts.plain(messages, f"grader_{self.settings.grader_format}")
        bound = token_bound([{"role": "user", "content": plain[0]}] if plain else messages)
        return messages, plain, self.prices.worst_case(self.model.model, bound, self.settings.max_tokens)

    async def grade(self, step: int, items: list[tuple[Combination, str]]) -> list[Graded]:
        """Every answer graded ``grader_runs`` times, the whole step reserved at once under the cap."""
        s, runs = self.settings, self.settings.grader_runs
        planned = [self.requests(combination, answer) for combination, answer in items]
        reservation = Reservation(f"{self.run_id}:step-{step}", runs * sum(w for *_, w in planned), 0.0)
        calls = []
        for messages, plain, worst in planned:
            held = Reservation(reservation.id, reservation.remaining_usd, worst)
            for run in range(runs):
                seed = None if s.seed is None else s.seed + run
                calls.append(self.client.complete(messages, s.temperature, s.max_tokens, seed, held, plain))
        done = list(await asyncio.gather(*calls))
        self.client.cache.release(reservation.id)  # what cached answers did not draw
        if any(c.status == "budget" for c in done):
            cap, spent = s.client.max_usd or 0.0, self.client.cache.spent_usd()
            raise JudgeCapReached(step, cap, spent, reservation.remaining_usd)
        return [
            grade_answer(combination, answer, done[i * runs : (i + 1) * runs], self.rules)
            for i, (combination, answer) in enumerate(items)
        ]


def grade_answer(
    combination: Combination, answer: str, runs: Sequence[Completion], rules: ScoringRules
) -> Graded:
    """One answer's grade from the judge's replies (one per grader run): each parsed, then decided by the
    dataset's deciding step under ``rules``. Pure: it sends nothing."""
    from skillmix.pipelines.steps import decide_row  # the dataset's deciding step (distilabel: late)

    points, statuses, errors = [], [], []
    for c in runs:
        grade = parse_grade(c.text, combination.skills, combination.topic) if c.ok else None
        points.append(grade.points if grade is not None else None)
        statuses.append(c.status if grade is None else "ok" if grade.ok else "unparseable")
        errors.append(c.error if grade is None else grade.error)
    row = {
        "skills": [skill.name for skill in combination.skills],
        "topic": combination.topic,
        "answer": answer,
        "round1_status": "ok",  # the student's one reply stands for both generation rounds
        "round2_status": "ok",
        "grader_points": points,
        "grader_status": statuses,
        "grader_errors": errors,
    }
    decided = decide_row(row, rules)
    return Graded(combination.id, answer, decided, sum(1 for c in runs if not c.cached and c.attempts))


class JudgeReward:
    """TRL's reward function over :class:`Judge` (see the module docstring); ``journal`` gets each step."""

    def __init__(self, judge: Judge, combinations: list[Combination], kind: str, journal: Path) -> None:
        self.__name__ = "skillmix_judge"  # TRL names the reward's metrics after it
        self.judge, self.kind, self.journal = judge, kind, journal
        self.combinations = {c.id: c for c in combinations}
        self.ungradable = 0

    async def __call__(
        self, prompts: list[Any], completions: list[Any], combination: list[str], **kwargs: Any
    ) -> list[float]:
        step = kwargs["trainer_state"].global_step + 1
        items = [
            (self.combinations[cid], answer_of(c)) for cid, c in zip(combination, completions, strict=True)
        ]
        graded = await self.judge.grade(step, items)
        rewards = [g.reward(self.kind) for g in graded]
        summary = step_summary(graded, rewards)
        self.ungradable += summary["ungradable"]
        log_metric: Callable[[str, float], None] = kwargs["log_metric"]
        for name in ("full_marks", "skill_fraction", "ungradable"):
            log_metric(f"judge/{name}", summary[name])
        self._write(step, graded, rewards, summary)
        return rewards

    def _write(self, step: int, graded: list[Graded], rewards: list[float], summary: dict[str, Any]) -> None:
        answers = [
            {
                "combination": g.combination,
                "answer": g.answer,
                "points": g.decided["points"],
                "reward": reward,
                "ungradable": not g.gradable,
                "reason": g.decided["failure_reason"],
            }
            for g, reward in zip(graded, rewards, strict=True)
        ]
        line = {"step": step, **summary, "spent_usd": self.judge.client.cache.spent_usd(), "answers": answers}
        with self.journal.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")


def step_summary(graded: list[Graded], rewards: list[float]) -> dict[str, Any]:
    """The step's means over its completions (an ungradable one counts as 0) and its counts."""
    n = max(1, len(graded))
    return {
        "completions": len(graded),
        "reward": sum(rewards) / n,
        "full_marks": sum(g.decided["full_marks"] or 0.0 for g in graded) / n,
        "skill_fraction": sum(g.decided["skill_fraction"] or 0.0 for g in graded) / n,
        "ungradable": sum(1 for g in graded if not g.gradable),
        "requests_sent": sum(g.sent for g in graded),
    }
