"""What a row can cost, and how many rows a run starts: the hard spending cap and exact target sizes.

A row is two teacher requests and ``grader_runs`` judge requests. Its **worst case** is known before its
first request: every prompt is bounded by :func:`skillmix.llm.prices.token_bound` (bytes, never fewer than
the tokens) plus, for what a model wrote earlier in the row, that model's ``max_tokens``; every reply by its
``max_tokens``. Under ``--max-usd`` a row is started only when its whole worst case fits under the cap next
to what is spent and reserved (:class:`skillmix.llm.cache.RequestCache`), so a started row can always be
finished and the billed total never passes the cap.

``--target-accepted N`` draws rounds sized by the acceptance rate seen so far (:func:`next_round_size`),
so that the last rounds are small and the rows graded beyond N (kept in the ``surplus`` config) are few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from skillmix.llm.prices import PriceTable, token_bound
from skillmix.pipelines.config import ProtocolConfig
from skillmix.prompts import PromptSet

# Re-tokenizing a model's own reply inside a later prompt can shift a few tokens at its edges.
BOUNDARY_TOKENS = 8
# The expected case: English prompts at about four bytes a token, replies at half their max_tokens.
EXPECTED_BYTES_PER_TOKEN = 4
EXPECTED_REPLY_SHARE = 0.5


@dataclass(frozen=True)
class RowCost:
    """Worst-case dollars of one row by stage (``grade``: all its grader runs together)."""

    round1: float
    round2: float
    grade: float

    @property
    def total(self) -> float:
        return self.round1 + self.round2 + self.grade

    def remaining(self, stage: str) -> float:
        """The worst case of the row from ``stage`` on (what a first request at that stage reserves)."""
        order = ("round1", "round2", "grade")
        return sum(getattr(self, s) for s in order[order.index(stage) :])

    def to_dict(self) -> dict[str, float]:
        return {"round1": self.round1, "round2": self.round2, "grade": self.grade}


class RowCosts:
    """Prices the rows of a run for its generator (teacher, student) and judge (local models: nothing)."""

    def __init__(
        self, config: ProtocolConfig, models: tuple[Any, ...], prices: PriceTable, direct: bool = False
    ) -> None:
        self.config, self.prices = config, prices
        self.prompts = PromptSet(config.template_dir)
        self.generator, self.judge = models
        self.direct = direct  # direct prices even for a batched role (the plan shows both)
        self._rendered: dict[str, tuple[list[dict[str, str]], ...]] = {}

    def _messages(self, row: dict[str, Any]) -> tuple[list[dict[str, str]], ...]:
        """Round 1's, round 2's and the grader's messages of ``row``'s combination, rendered once (the worst
        and the expected case both need them: the paper's plan renders about 76,000 combinations)."""
        key = row.get("combination") or row["id"]
        if key not in self._rendered:
            skills, topic = row["skill_records"], row["topic"]
            grade = self.prompts.grader("", skills, topic, self.config.grader_format)
            self._rendered[key] = (
                self.prompts.conversation(skills, topic),
                self.prompts.conversation(skills, topic, ""),
                [{"role": "user", "content": grade}],
            )
        return self._rendered[key]

    def _cost(self, model: Any, prompt_tokens: float, output_tokens: float) -> float:
        if not model.priced:
            return 0.0
        batch = self.config.batch_priced(model.role) and not self.direct
        return self.prices.cost(model.model, int(prompt_tokens), int(output_tokens), batch=batch)

    def worst(self, row: dict[str, Any]) -> RowCost:
        """The worst case of a pipeline row (its ``skill_records`` and ``topic``)."""
        t_max, j_max, runs = (
            self.config.generator.max_tokens,
            self.config.judge.max_tokens,
            self.config.grader_runs,
        )
        first, second, grader = self._messages(row)
        round1 = token_bound(first)
        round2 = token_bound(second) + t_max + BOUNDARY_TOKENS
        grade = token_bound(grader) + t_max + BOUNDARY_TOKENS
        return RowCost(
            self._cost(self.generator, round1, t_max),
            self._cost(self.generator, round2, t_max),
            runs * self._cost(self.judge, grade, j_max),
        )

    def expected(self, row: dict[str, Any]) -> float:
        """A typical row: prompts at about four bytes a token, replies at half their ``max_tokens``."""
        t_out = self.config.generator.max_tokens * EXPECTED_REPLY_SHARE
        j_out = self.config.judge.max_tokens * EXPECTED_REPLY_SHARE

        def tokens(messages: list[dict[str, str]]) -> float:
            return sum(len((m.get("content") or "").encode()) for m in messages) / EXPECTED_BYTES_PER_TOKEN

        first, second, grader = self._messages(row)
        round1 = tokens(first)
        round2 = tokens(second) + t_out
        grade = tokens(grader) + t_out
        generator = self._cost(self.generator, round1, t_out) + self._cost(self.generator, round2, t_out)
        return generator + self.config.grader_runs * self._cost(self.judge, grade, j_out)


def affordable(costs: list[float], available: float | None) -> int:
    """How many of the rows (in order) fit, worst case, in ``available`` dollars (None: all of them)."""
    if available is None:
        return len(costs)
    spent = 0.0
    for count, cost in enumerate(costs):
        spent += cost
        if spent > available + 1e-12:
            return count
    return len(costs)


def acceptance_estimate(kept: int, graded: int, prior: float) -> float:
    """The acceptance rate so far, shrunk towards ``prior`` while few rows are graded (2 prior rows)."""
    return (kept + 2 * prior) / (graded + 2)


def next_round_size(target: int, kept: int, graded: int, prior: float) -> int:
    """Rows to draw so that the expected number kept meets the target: fewer as the target gets near."""
    need = target - kept
    if need <= 0:
        return 0
    rate = max(acceptance_estimate(kept, graded, prior), 0.02)
    return max(1, math.ceil(need / rate))
