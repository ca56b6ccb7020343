"""Tokens and dollars of pipeline rows, summed one way for every use: a row's record, a run's manifest, the
cost of an evaluation, the surplus of a target.

Each request of a row left its usage beside its output (``round1_usage``, ``round2_usage``, one
``grader_usage`` entry per grader run); the generator's requests (the teacher of a dataset, the student of
an evaluation) are rounds 1 and 2, the judge's the grader runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ROLE_STAGES = {"teacher": ("round1_usage", "round2_usage"), "judge": ("grader_usage",)}
FIELDS = ("input_tokens", "output_tokens", "usd")


def _entries(row: dict[str, Any], role: str) -> list[dict[str, Any]]:
    out = []
    for key in ROLE_STAGES[role]:
        value = row.get(key)
        out.extend(e for e in (value if isinstance(value, list) else [value]) if e)
    return out


def _total(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "usd": 0.0}
    for entry in entries:
        for key in FIELDS:
            total[key] += entry.get(key) or 0
    return total


def row_usage(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"teacher": {input_tokens, output_tokens, usd}, "judge": {...}}`` of one row (zeros when unsent)."""
    return {role: _total(_entries(row, role)) for role in ROLE_STAGES}


def rows_usage(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The usage of many rows by role; a role none of whose requests left usage is absent."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        for role in ROLE_STAGES:
            entries.setdefault(role, []).extend(_entries(row, role))
    return {role: _total(found) for role, found in entries.items() if found}


def usd(usage: dict[str, dict[str, Any]]) -> float:
    """The dollars of a usage by role."""
    return sum(role["usd"] for role in usage.values())


def row_usd(row: dict[str, Any]) -> float:
    return usd(row_usage(row))
