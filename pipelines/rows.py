"""Pipeline rows -> records of the dataset schema (:data:`skillmix.release.schema.SCHEMA`), as Parquet."""

from __future__ import annotations

from typing import Any

from skillmix.prompts import PromptSet
from skillmix.release.schema import SCHEMA, write_parquet


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


__all__ = ["SCHEMA", "to_records", "write_parquet"]
