"""The row schema of every config of a Skill-Mix dataset, and writing it as Parquet.

One explicit Arrow schema for all configs (kept, rejected, failed) so that a column never changes type
with the rows that happen to be in a file (a column of only nulls would otherwise be typed ``null``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skillmix.prompts import TEMPLATES, PromptSet

_USAGE = pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("usd", pa.float64())])
_MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("k", pa.int64()),
        ("setting", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("categories", pa.list_(pa.string())),
        ("topic", pa.string()),
        ("conversation", pa.list_(_MESSAGE)),
        ("answer", pa.string()),
        ("grader_outputs", pa.list_(pa.string())),
        ("grader_points", pa.list_(pa.list_(pa.int64()))),
        ("grader_status", pa.list_(pa.string())),
        ("grader_errors", pa.list_(pa.string())),
        ("points", pa.list_(pa.int64())),
        ("full_marks", pa.float64()),
        ("all_skills", pa.float64()),
        ("skill_fraction", pa.float64()),
        ("failed_points", pa.list_(pa.string())),
        ("sentences", pa.int64()),
        ("named_skills", pa.list_(pa.string())),
        ("outcome", pa.string()),
        ("status", pa.string()),
        ("failure_reason", pa.string()),
        ("teacher", pa.string()),
        ("judge", pa.string()),
        ("prompt_hashes", pa.struct([(name, pa.string()) for name in TEMPLATES])),
        ("usage", pa.struct([("teacher", _USAGE), ("judge", _USAGE)])),
    ]
)


def _sum_usage(entries: Any) -> dict[str, float]:
    entries = entries if isinstance(entries, list) else [entries]
    total = {"input_tokens": 0, "output_tokens": 0, "usd": 0.0}
    for entry in entries:
        for key in total:
            total[key] += (entry or {}).get(key) or 0
    return total


def to_records(result: Any, prompts: PromptSet) -> list[dict[str, Any]]:
    """Pipeline rows -> records of :data:`SCHEMA` (the conversation is re-rendered from the templates)."""
    from skillmix.catalog import load_catalog

    skills_by_name = {
        s.name: s for s in load_catalog(result.config.catalog, topics=result.config.topics).skills
    }
    teacher, judge = result.models
    hashes = prompts.hashes()
    records = []
    for row in result.rows:
        skills = [skills_by_name[name] for name in row["skills"]]
        conversation = []
        if row.get("round1") is not None:
            conversation = prompts.conversation(skills, row["topic"], row.get("round1"), row.get("round2"))
        records.append(
            {
                **{name: row.get(name) for name in SCHEMA.names if name in row},
                "conversation": conversation,
                "teacher": teacher.model,
                "judge": judge.model,
                "prompt_hashes": hashes,
                "usage": {
                    "teacher": _sum_usage([row.get("round1_usage"), row.get("round2_usage")]),
                    "judge": _sum_usage(row.get("grader_usage") or []),
                },
            }
        )
    return records


def write_parquet(records: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [{name: r.get(name) for name in SCHEMA.names} for r in records], schema=SCHEMA
    )
    pq.write_table(table, path)
