"""Pipeline rows -> records of the dataset schema (:data:`skillmix.dataset_folder.schema.SCHEMA`)."""

from __future__ import annotations

from typing import Any

from skillmix.dataset_folder.schema import SCHEMA
from skillmix.pipelines.usage import row_usage
from skillmix.prompts import PromptSet


def to_record(row: dict[str, Any], models: tuple[Any, ...], hashes: dict[str, str]) -> dict[str, Any]:
    """One pipeline row as a record of :data:`SCHEMA`: its columns, the conversation it was sent (with the
    replies), the models, the prompt hashes and its usage."""
    generator, judge = models
    return {
        **{name: row.get(name) for name in SCHEMA.names if name in row},
        "conversation": row.get("conversation") or [],
        "teacher": generator.model,
        "judge": judge.model,
        "prompt_hashes": hashes,
        "usage": row_usage(row),
    }


def to_records(result: Any, prompts: PromptSet) -> list[dict[str, Any]]:
    """The rows of a dataset build as records of :data:`SCHEMA`."""
    hashes = prompts.hashes()
    return [to_record(row, result.models, hashes) for row in result.rows]


__all__ = ["to_record", "to_records"]
