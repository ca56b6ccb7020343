"""Token prices per model, for cost estimates before a run and the spend reported after it.

Prices are US dollars per million input and output tokens. The built-in table covers common teacher and
judge models (list prices as published by their vendors; check them before budgeting a large run) and can
be overridden or extended with a YAML/JSON file mapping ``model: {input: ..., output: ...}``. A model that
is not in the table costs 0 and is reported as unpriced; local models (the embedded default) are free.

**Batch prices.** A request sent through a provider's batch API costs :data:`BATCH_DISCOUNT` of its direct
price (OpenAI's rule: half), unless the file gives the model ``batch_input`` and ``batch_output`` prices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from skillmix.config import ConfigError

# Chat formatting costs a few tokens per message and a few to prime the reply (OpenAI: 3 and 3).
MESSAGE_OVERHEAD_TOKENS = 4
REPLY_OVERHEAD_TOKENS = 3
BATCH_DISCOUNT = 0.5  # a batched request's share of its direct price, where the table names no batch price

# USD per 1M tokens (input, output).
BUILTIN_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4": (30.0, 60.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-3.5-turbo": (0.5, 1.5),
}


@dataclass
class PriceTable:
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(BUILTIN_PRICES))
    free: set[str] = field(default_factory=set)  # models known to cost nothing (local servers)
    batch: dict[str, tuple[float, float]] = field(default_factory=dict)  # batch prices given by a file

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        table = cls()
        if path is not None:
            text = Path(path).read_text(encoding="utf-8")
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a mapping of model -> {{input, output}}")
            for model, entry in data.items():
                try:
                    table.prices[str(model)] = (float(entry["input"]), float(entry["output"]))
                    if "batch_input" in entry or "batch_output" in entry:
                        table.batch[str(model)] = (float(entry["batch_input"]), float(entry["batch_output"]))
                except (TypeError, KeyError, ValueError):
                    raise ConfigError(f"{path}: model {model!r} needs numeric 'input' and 'output'") from None
        return table

    def lookup(self, model: str) -> tuple[float, float] | None:
        """Price of ``model``; a dated snapshot (``gpt-4o-2024-08-06``) falls back to its base name."""
        if model in self.free:
            return (0.0, 0.0)
        if model in self.prices:
            return self.prices[model]
        candidates = [m for m in self.prices if model.startswith(m + "-")]
        return self.prices[max(candidates, key=len)] if candidates else None

    def cost(self, model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
        price = self.batch_price(model) if batch else self.lookup(model)
        if price is None:
            return 0.0
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000

    def batch_price(self, model: str) -> tuple[float, float] | None:
        """The price of ``model`` through a batch API: the file's, else the direct one at the discount."""
        if model in self.batch and model not in self.free:
            return self.batch[model]
        price = self.lookup(model)
        return None if price is None else (price[0] * BATCH_DISCOUNT, price[1] * BATCH_DISCOUNT)

    def is_priced(self, model: str) -> bool:
        return self.lookup(model) is not None

    def worst_case(self, model: str, prompt_tokens: int, max_tokens: int, batch: bool = False) -> float:
        """The most a request can cost: its prompt tokens (an upper bound) and ``max_tokens`` of output."""
        return self.cost(model, prompt_tokens, max_tokens, batch)


def token_bound(messages: list[dict[str, str]]) -> int:
    """An upper bound of the prompt tokens of ``messages`` for any byte-level tokenizer (every token covers
    at least one byte of UTF-8) plus the chat formatting; about four times the usual count for English, so
    a spending cap built on it can never be passed by a surprising tokenization."""
    text_bytes = sum(len((m.get("content") or "").encode("utf-8")) for m in messages)
    return text_bytes + MESSAGE_OVERHEAD_TOKENS * len(messages) + REPLY_OVERHEAD_TOKENS
