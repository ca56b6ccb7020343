"""The plan printed before a dataset build (and all that ``--dry-run`` does): rows, requests, dollars.

Two figures, both from :class:`skillmix.pipelines.budget.RowCosts`: the **worst case** (every prompt at
its byte bound, every reply at ``max_tokens``), which is what the spending cap reserves, and the
**expected case** (prompts at about four bytes a token, replies at half their ``max_tokens``). Under
``--target-accepted N`` the expected number of rows comes from the assumed acceptance rate
(``expected_acceptance``, 0.5 unless the preset or a flag says otherwise).
"""

from __future__ import annotations

import math
from typing import Any

from skillmix.llm.prices import PriceTable
from skillmix.pipelines.budget import RowCosts
from skillmix.pipelines.config import DatasetConfig


def estimate(config: DatasetConfig, models: tuple[Any, ...], rows: list[Any], prices: PriceTable) -> str:
    """The plan of the first round over ``rows`` (and of the whole run under a target), in lines."""
    costs = RowCosts(config, models, prices)
    n = len(rows)
    worst = sum(costs.worst(row).total for row in rows)
    expected = sum(costs.expected(row) for row in rows)
    ks = ",".join(map(str, config.k))
    combinations = len({row.get("combination", row["id"]) for row in rows})
    drawn = f"{combinations} combinations"
    if n != combinations:  # --generations G: G rows (texts) per combination
        drawn += f" x {config.generations} generations = {n} texts"
    lines = [f"Plan: {drawn} (k={ks}), {n * (2 + config.grader_runs)} requests"]
    for model in models:
        price = "free" if not model.priced else _price(prices, model.model)
        lines.append(f"  {model.role:<7} {model.describe()}: {price}")
    lines.append(f"  worst case ${worst:,.4f} (prompts at their byte bound, replies at max_tokens)")
    lines.append(f"  expected   ${expected:,.4f} (prompts at ~4 bytes a token, replies at half max_tokens)")
    if config.batch_files is not None:
        from skillmix.pipelines.batch_files import plan_line

        lines.append(plan_line(config, models))
    elif config.generator.batch or config.judge.batch:
        direct = RowCosts(config, models, prices, direct=True)
        lines.append(
            f"  batched: the figures above are at the batch price; sent one by one, worst case "
            f"${sum(direct.worst(row).total for row in rows):,.4f}, expected "
            f"${sum(direct.expected(row) for row in rows):,.4f} (batches take up to 24 hours)"
        )
    if config.target_accepted is not None and n:
        rows = math.ceil(config.target_accepted / config.expected_acceptance) * len(config.k)
        per_row = expected / n
        lines.append(
            f"  --target-accepted {config.target_accepted}: about {rows} rows at the assumed acceptance "
            f"{config.expected_acceptance:.0%}, expected ${rows * per_row:,.4f}"
        )
    cap = config.client.max_usd
    if cap is not None:
        row_worst = worst / n if n else 0.0
        room = int(cap // row_worst) if row_worst else n
        lines.append(
            f"  --max-usd ${cap:.2f}: never passed; a row starts only if its worst case fits "
            f"(${row_worst:,.4f} a row: room for {room} at once)"
        )
    return "\n".join(lines)


def _price(prices: PriceTable, model: str) -> str:
    price = prices.lookup(model)
    if price is None:
        return "no price known (add it with --prices): counted as $0"
    return f"${price[0]:g} / ${price[1]:g} per 1M tokens in / out"
