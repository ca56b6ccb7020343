"""The SQL of the request cache's file (:mod:`skillmix.llm.cache`): its tables, and the statements that both
the cache and its batch lines (:mod:`skillmix.llm.batch_ledger`) run inside their transactions."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from typing import Any

EPSILON = 1e-12  # dollars: rounding of float sums

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    usd REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id TEXT PRIMARY KEY,
    usd REAL NOT NULL,
    pid INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    started REAL NOT NULL,
    wall_seconds REAL NOT NULL,
    usd REAL NOT NULL,
    requests INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    key TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    body TEXT NOT NULL,
    worst_usd REAL NOT NULL,
    state TEXT NOT NULL,
    input_file TEXT,
    batch_id TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    reservation TEXT,
    reserve_usd REAL,
    stage TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    input_file TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    lines INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    at REAL NOT NULL,
    tokens INTEGER NOT NULL
);
"""


def put_response(db: sqlite3.Connection, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO responses (key, request, response, created) VALUES (?, ?, ?, ?)",
        (key, json.dumps(request, ensure_ascii=False), json.dumps(response), time.time()),
    )


def settle_reservation(
    db: sqlite3.Connection, rid: str, worst: float, spend: tuple[str, str, int, int, float] | None
) -> None:
    if spend is not None:
        key, *billed = spend
        db.execute("INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?)", (billing_id(key), *billed, time.time()))
    db.execute("UPDATE reservations SET usd = usd - ? WHERE id = ?", (worst, rid))
    db.execute("DELETE FROM reservations WHERE id = ? AND usd <= ?", (rid, EPSILON))


def billing_id(key: str) -> str:
    """The ledger's row id of one billing of request ``key`` (the ledger counts every billed answer)."""
    return f"{key}:{uuid.uuid4().hex}"


def add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add the ``columns`` a file written by an older version lacks."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def committed_of(db: sqlite3.Connection) -> float:
    (spent,) = db.execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()
    (held,) = db.execute("SELECT COALESCE(SUM(usd), 0) FROM reservations").fetchone()
    return float(spent) + float(held)
