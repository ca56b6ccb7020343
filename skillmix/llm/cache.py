"""A persistent per-request cache and spend ledger in one SQLite file.

Every completed request is stored under a key derived from the *full* request (endpoint identity, model,
messages, sampling parameters and seed), committed as soon as its answer arrives. A run that is killed
(Ctrl-C, SIGKILL, a crash) and started again therefore pays for no request that had already completed,
whatever state distilabel's own cache was in. The ledger records every billed answer (a request answered
twice, once before a crash and once after, is billed twice) so that a spending limit holds across processes
(distilabel runs each step in its own process) and across restarts, and so that a folder's record says what
it cost over every run that built it (``runs``: each run's time, spend and requests).

A hard spending cap needs more than the ledger: before a request is sent, its worst-case cost is
*reserved* (a row of ``reservations``), and the spend so far plus every open reservation must stay within
the cap; the answer replaces the reservation by the billed cost. A reservation left behind by a process
that died is never released, so it keeps counting at its worst case: the provider may have billed it.
The one-minute windows of the rate limits (``rate_events``) live here too, so that every process of a
run shares them.

SQLite in WAL mode is safe for several processes; each process opens its own connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skillmix.llm.batch_ledger import BatchLedger
from skillmix.llm.cache_sql import (
    EPSILON,
    SCHEMA,
    add_columns,
    billing_id,
    committed_of,
    put_response,
    settle_reservation,
)


def request_key(identity: str, body: dict[str, Any]) -> str:
    """SHA-256 of the endpoint identity and the canonical JSON of the request body."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{identity}\x1e{blob}".encode()).hexdigest()


class RequestCache(BatchLedger):
    """Completed responses and their cost, keyed by :func:`request_key`; ``path=None`` keeps it in memory."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._lock = threading.RLock()  # re-entrant: a transaction() may call the methods that take it
        self._conn: sqlite3.Connection | None = None
        self._depth = 0  # nested transaction() calls join the outermost one

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            target = ":memory:"
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                target = str(self.path)
            conn = sqlite3.connect(target, timeout=60, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            add_columns(conn, "batch_lines", {"reservation": "TEXT", "reserve_usd": "REAL", "stage": "TEXT"})
            self._conn = conn
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db().execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        with self._lock:
            put_response(self._db(), key, request, response)

    def record_spend(self, key: str, model: str, input_tokens: int, output_tokens: int, usd: float) -> None:
        """One billed answer: a request answered twice (sent again after a crash) is billed twice."""
        with self._lock:
            self._db().execute(
                "INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?)",
                (billing_id(key), model, input_tokens, output_tokens, usd, time.time()),
            )

    def spent_usd(self) -> float:
        with self._lock:
            (total,) = self._db().execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()
        return float(total)

    def reserved_usd(self) -> float:
        with self._lock:
            (total,) = self._db().execute("SELECT COALESCE(SUM(usd), 0) FROM reservations").fetchone()
        return float(total)

    def committed_usd(self) -> float:
        """What the cap must cover: the spend so far plus every open reservation."""
        with self.transaction() as db:
            return committed_of(db)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An exclusive write transaction across every process sharing the file; one opened inside another
        (in the same thread) is part of it, so that a batch's collection commits whole or not at all."""
        with self._lock:
            db = self._db()
            if self._depth:
                self._depth += 1
                try:
                    yield db
                finally:
                    self._depth -= 1
                return
            db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0
            db.execute("COMMIT")

    def reserve(self, rid: str, usd: float, cap: float) -> bool:
        """Hold ``usd`` for ``rid`` if the cap covers it (a reservation ``rid`` already held is kept)."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM reservations WHERE id = ?", (rid,)).fetchone():
                return True
            if committed_of(db) + usd > cap + EPSILON:
                return False
            db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?)", (rid, usd, os.getpid(), time.time()))
            return True

    def reserve_many(self, items: list[tuple[str, float]], cap: float) -> set[str]:
        """:meth:`reserve` for each ``(rid, usd)`` in order, in one transaction (many batch lines at once);
        returns the ids held."""
        with self.transaction() as db:
            committed = committed_of(db)
            held = {rid for (rid,) in db.execute("SELECT id FROM reservations")}
            out = set()
            for rid, usd in items:
                if rid not in held:
                    if committed + usd > cap + EPSILON:
                        continue
                    db.execute(
                        "INSERT INTO reservations VALUES (?, ?, ?, ?)", (rid, usd, os.getpid(), time.time())
                    )
                    committed += usd
                    held.add(rid)  # the next line of the same row draws on it
                out.add(rid)
            return out

    def settle(self, rid: str, worst: float, spend: tuple[str, str, int, int, float] | None) -> None:
        """One request of ``rid`` is over: draw its ``worst`` from the reservation, record what it billed
        (``spend``: key, model, input tokens, output tokens, usd; None when nothing was billed)."""
        with self.transaction() as db:
            settle_reservation(db, rid, worst, spend)

    def release(self, rid: str) -> None:
        """Give back what is left of ``rid``'s reservation (its row is done or will send nothing more)."""
        with self.transaction() as db:
            db.execute("DELETE FROM reservations WHERE id = ?", (rid,))

    def record_run(self, started: float, wall_seconds: float, usd: float, requests: int) -> None:
        """One run into the folder that used this cache: when, how long, what it paid, how many requests."""
        with self._lock:
            self._db().execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, started, wall_seconds, usd, requests),
            )

    def runs(self) -> dict[str, float]:
        """The runs recorded so far: how many, their wall time and what they paid, together."""
        with self._lock:
            n, wall, usd = (
                self._db()
                .execute("SELECT COUNT(*), COALESCE(SUM(wall_seconds), 0), COALESCE(SUM(usd), 0) FROM runs")
                .fetchone()
            )
        return {"runs": int(n), "wall_seconds": float(wall), "usd": float(usd)}

    def spend_by_model(self) -> dict[str, dict[str, float]]:
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(usd) FROM spend "
                    "GROUP BY model"
                )
                .fetchall()
            )
        return {m: {"requests": n, "input_tokens": i, "output_tokens": o, "usd": u} for m, n, i, o, u in rows}

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for distilabel's step processes
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])
