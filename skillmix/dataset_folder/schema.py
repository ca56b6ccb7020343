"""The row schema of the data configs of a Skill-Mix dataset (kept, rejected, failed), and Parquet writing
and the ``preference`` config's own schema (:data:`PREFERENCE_SCHEMA`).

One explicit Arrow schema for all configs so that a column never changes type with the rows that happen to
be in a file (a column of only nulls would otherwise be typed ``null``), and every type has a ``datasets``
equivalent (no Arrow maps).

``review`` (null unless a human review decided the row, see :mod:`skillmix.review.reviewed`) is the last
column: a folder written before it existed has no such column and still loads; publishing or writing it
again with this schema fills the column with nulls.

Every writer of data configs (the build, the reviewed folder, the release) goes through
:func:`write_configs`, so a config's file is always where the layout puts it
(:func:`~skillmix.dataset_folder.layout.config_path`) with this schema, and an empty config is always left
out (``datasets`` cannot load a zero-row Parquet file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from skillmix.dataset_folder.layout import config_path
from skillmix.prompts import HASHED

_USAGE = pa.struct([("input_tokens", pa.int64()), ("output_tokens", pa.int64()), ("usd", pa.float64())])
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
_REVIEW = pa.struct(
    [
        ("decided_by", pa.string()),
        ("annotators", pa.int64()),
        ("human_points", pa.list_(pa.int64())),
        ("judge_points", pa.list_(pa.int64())),
        ("judge_shown", pa.bool_()),
        ("reason", pa.string()),
    ]
)

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("k", pa.int64()),
        ("setting", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("categories", pa.list_(pa.string())),
        ("topic", pa.string()),
        ("conversation", pa.list_(MESSAGE)),
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
        ("prompt_hashes", pa.struct([(name, pa.string()) for name in HASHED])),
        ("usage", pa.struct([("teacher", _USAGE), ("judge", _USAGE)])),
        ("review", _REVIEW),
    ]
)


# The ``preference`` config (:mod:`skillmix.dataset_folder.preference`): TRL's conversational preference
# format (prompt, chosen, rejected) and what traces a pair to its graded rows.
PREFERENCE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("combination", pa.string()),
        ("k", pa.int64()),
        ("setting", pa.string()),
        ("skills", pa.list_(pa.string())),
        ("categories", pa.list_(pa.string())),
        ("topic", pa.string()),
        ("prompt", pa.list_(MESSAGE)),
        ("chosen", pa.list_(MESSAGE)),
        ("rejected", pa.list_(MESSAGE)),
        ("chosen_id", pa.string()),
        ("rejected_id", pa.string()),
        ("chosen_points", pa.list_(pa.int64())),
        ("rejected_points", pa.list_(pa.int64())),
        ("margin", pa.int64()),
        ("pairing", pa.string()),
        ("teacher", pa.string()),
        ("judge", pa.string()),
    ]
)


def schema_of(name: str) -> pa.Schema:
    """The declared schema of the config ``name``: :data:`PREFERENCE_SCHEMA` for ``preference``, every other
    config :data:`SCHEMA`."""
    return PREFERENCE_SCHEMA if name == "preference" else SCHEMA


def write_parquet(records: list[dict[str, Any]], path: Path, schema: pa.Schema = SCHEMA) -> None:
    """``records`` as one Parquet file of ``schema`` (a missing column is null, an extra one dropped)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(
        [{name: r.get(name) for name in schema.names} for r in records], schema=schema
    )
    pq.write_table(table, path)


def write_configs(folder: Path, configs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One Parquet file per config with rows, in the order given (empty ones are left out); returns the
    manifest's ``configs`` entry ``{name: {path, rows}}``."""
    written = {}
    for name, rows in configs.items():
        if rows:
            write_parquet(rows, folder / config_path(name), schema_of(name))
            written[name] = {"path": config_path(name), "rows": len(rows)}
    return written
