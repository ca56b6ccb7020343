"""The cost estimate printed before a dataset build: requests, tokens and dollars per model.

Prompt tokens are estimated from the rendered prompts of (up to 20 of) the planned combinations at about
four characters a token; replies count at their ``max_tokens``, so the dollar figure is an upper bound for
the planned rows.
"""

from __future__ import annotations

from typing import Any

from skillmix.llm.prices import PriceTable
from skillmix.pipelines.config import DatasetConfig
from skillmix.prompts import PromptSet


def estimate(config: DatasetConfig, models: tuple[Any, ...], combos: list[Any]) -> str:
    """The plan printed before a run: combinations, requests, tokens and cost per model, the cap."""
    prices = PriceTable.load(config.prices)
    prompts = PromptSet(config.template_dir)
    teacher, judge = models
    cost, lines = 0.0, []
    sample = combos[: min(len(combos), 20)]
    r1 = sum(len(prompts.round1(c.skills, c.topic)) for c in sample) / max(1, len(sample)) / 4
    g = sum(len(prompts.grader("x" * 400, c.skills, c.topic)) for c in sample) / max(1, len(sample)) / 4
    n = len(combos)
    t_in = n * (r1 + (r1 + config.teacher.max_tokens + 120))
    t_out = n * 2 * config.teacher.max_tokens
    j_in = n * config.grader_runs * g
    j_out = n * config.grader_runs * config.judge.max_tokens
    for model, tin, tout in ((teacher, t_in, t_out), (judge, j_in, j_out)):
        usd = 0.0 if model.free else prices.cost(model.model, int(tin), int(tout))
        priced = model.free or prices.is_priced(model.model)
        cost += usd
        lines.append(
            f"  {model.role:<7} {model.describe()}: "
            f"~{tin / 1e3:,.0f}k in / <= {tout / 1e3:,.0f}k out tokens, "
            + (f"<= ${usd:,.2f}" if priced else "no price known (add it with --prices)")
        )
    requests = n * (2 + config.grader_runs)
    cap = config.client.max_usd
    budget = f"; stops at --max-usd ${cap:.2f}" if cap else ""
    head = f"Plan: {n} combinations (k={','.join(map(str, config.k))}), {requests} requests, "
    return head + f"estimated cost <= ${cost:,.2f}{budget}\n" + "\n".join(lines)
