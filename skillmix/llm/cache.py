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

_SCHEMA = """
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

_EPSILON = 1e-12  # dollars: rounding of float sums


def request_key(identity: str, body: dict[str, Any]) -> str:
    """SHA-256 of the endpoint identity and the canonical JSON of the request body."""
    blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(f"{identity}\x1e{blob}".encode()).hexdigest()


class RequestCache:
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
            conn.executescript(_SCHEMA)
            _add_columns(conn, "batch_lines", {"reservation": "TEXT", "reserve_usd": "REAL", "stage": "TEXT"})
            self._conn = conn
        return self._conn

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db().execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        with self._lock:
            _put(self._db(), key, request, response)

    def record_spend(self, key: str, model: str, input_tokens: int, output_tokens: int, usd: float) -> None:
        """One billed answer: a request answered twice (sent again after a crash) is billed twice."""
        with self._lock:
            self._db().execute(
                "INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?)",
                (_billing_id(key), model, input_tokens, output_tokens, usd, time.time()),
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
            return _committed(db)

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
            if _committed(db) + usd > cap + _EPSILON:
                return False
            db.execute("INSERT INTO reservations VALUES (?, ?, ?, ?)", (rid, usd, os.getpid(), time.time()))
            return True

    def reserve_many(self, items: list[tuple[str, float]], cap: float) -> set[str]:
        """:meth:`reserve` for each ``(rid, usd)`` in order, in one transaction (many batch lines at once);
        returns the ids held."""
        with self.transaction() as db:
            committed = _committed(db)
            held = {rid for (rid,) in db.execute("SELECT id FROM reservations")}
            out = set()
            for rid, usd in items:
                if rid not in held:
                    if committed + usd > cap + _EPSILON:
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
            _settle(db, rid, worst, spend)

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

    # -- batch mode (skillmix.pipelines.batches): each request's line, and each batch, before it is sent --

    def want(
        self,
        key: str,
        endpoint: dict[str, Any],
        body: dict[str, Any],
        worst_usd: float,
        reservation: tuple[str, float] | None = None,
        *,
        stage: str | None = None,
    ) -> None:
        """A request a batched role needs answered (kept as it is if its line is already known).

        ``worst_usd`` is drawn from the line's reservation when it is answered; ``reservation`` (under a cap:
        its row's id and the row's worst case from this line on) is what its batch reserves before it is
        sent (None: the line's own ``batch:<key>`` for ``worst_usd``); ``stage``: the pipeline stage that
        asks (round1, round2, grade), which names its batch file."""
        rid, usd = reservation or (f"batch:{key}", worst_usd)
        with self._lock:
            self._db().execute(
                "INSERT OR IGNORE INTO batch_lines (key, endpoint, body, worst_usd, state, created, "
                "reservation, reserve_usd, stage) VALUES (?, ?, ?, ?, 'wanted', ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(endpoint, sort_keys=True),
                    json.dumps(body),
                    worst_usd,
                    time.time(),
                    rid,
                    usd,
                    stage,
                ),
            )

    def batch_line(self, key: str) -> dict[str, Any] | None:
        return next(iter(self.batch_lines("key = ?", (key,))), None)

    def batch_lines(self, where: str = "1", args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        columns = (
            "key",
            "endpoint",
            "body",
            "worst_usd",
            "state",
            "input_file",
            "batch_id",
            "attempts",
            "error",
            "reservation",
            "reserve_usd",
            "created",
            "stage",
        )
        with self._lock:
            rows = (
                self._db()
                .execute(f"SELECT {', '.join(columns)} FROM batch_lines WHERE {where}", args)
                .fetchall()
            )
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for line in out:
            line["endpoint"], line["body"] = json.loads(line["endpoint"]), json.loads(line["body"])
            if line["reservation"] is None:  # a line recorded before lines named their reservation
                line["reservation"], line["reserve_usd"] = f"batch:{line['key']}", line["worst_usd"]
        return out

    def forget_lines(self, where: str, args: tuple[Any, ...] = ()) -> int:
        """Drop the lines ``where`` holds (a new run wants them afresh); returns how many."""
        with self.transaction() as db:
            return db.execute(f"DELETE FROM batch_lines WHERE {where}", args).rowcount

    def set_lines(self, keys: list[str], state: str, **values: Any) -> None:
        """Move lines to ``state`` (with ``input_file``, ``batch_id``, ``error`` or ``attempts`` set)."""
        with self.transaction() as db:
            _set_lines(db, keys, state, values)

    def close_line(
        self,
        key: str,
        state: str,
        settle: tuple[str, float, tuple[str, str, int, int, float] | None] | None,
        answer: tuple[dict[str, Any], dict[str, Any]] | None = None,
        **values: Any,
    ) -> None:
        """One batch line's result in one transaction (a kill leaves all of it or none): its reservation
        settled (``settle``: id, worst case, spend as :meth:`settle` takes them; None: kept as it is), its
        ``answer`` (request, response) stored, the line moved to ``state`` (with ``values``, as
        :meth:`set_lines`)."""
        with self.transaction() as db:
            if settle is not None:
                _settle(db, *settle)
            if answer is not None:
                _put(db, key, *answer)
            _set_lines(db, [key], state, values)

    def record_batch(
        self, batch_id: str, input_file: str, endpoint: dict[str, Any], stage: str, lines: int
    ) -> None:
        with self._lock:
            self._db().execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, 'submitted', ?, ?)",
                (batch_id, input_file, json.dumps(endpoint, sort_keys=True), stage, lines, time.time()),
            )

    def set_batch(self, batch_id: str, status: str) -> None:
        with self._lock:
            self._db().execute("UPDATE batches SET status = ? WHERE id = ?", (status, batch_id))

    def batch_records(self, open_only: bool = False) -> list[dict[str, Any]]:
        columns = ("id", "input_file", "endpoint", "stage", "status", "lines", "created")
        where = "WHERE status = 'submitted'" if open_only else ""
        with self._lock:
            rows = (
                self._db()
                .execute(f"SELECT {', '.join(columns)} FROM batches {where} ORDER BY created")
                .fetchall()
            )
        out = [dict(zip(columns, row, strict=True)) for row in rows]
        for batch in out:
            batch["endpoint"] = json.loads(batch["endpoint"])
        return out

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


def _put(db: sqlite3.Connection, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO responses (key, request, response, created) VALUES (?, ?, ?, ?)",
        (key, json.dumps(request, ensure_ascii=False), json.dumps(response), time.time()),
    )


def _settle(
    db: sqlite3.Connection, rid: str, worst: float, spend: tuple[str, str, int, int, float] | None
) -> None:
    if spend is not None:
        key, *billed = spend
        db.execute("INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?)", (_billing_id(key), *billed, time.time()))
    db.execute("UPDATE reservations SET usd = usd - ? WHERE id = ?", (worst, rid))
    db.execute("DELETE FROM reservations WHERE id = ? AND usd <= ?", (rid, _EPSILON))


def _set_lines(db: sqlite3.Connection, keys: list[str], state: str, values: dict[str, Any]) -> None:
    sets = ", ".join(["state = ?", *(f"{name} = ?" for name in values)])
    db.executemany(
        f"UPDATE batch_lines SET {sets} WHERE key = ?", [(state, *values.values(), key) for key in keys]
    )


def _billing_id(key: str) -> str:
    """The ledger's row id of one billing of request ``key`` (the ledger counts every billed answer)."""
    return f"{key}:{uuid.uuid4().hex}"


def _add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str]) -> None:
    """Add the ``columns`` a file written by an older version lacks."""
    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    for name, kind in columns.items():
        if name not in have:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _committed(db: sqlite3.Connection) -> float:
    (spent,) = db.execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()
    (held,) = db.execute("SELECT COALESCE(SUM(usd), 0) FROM reservations").fetchone()
    return float(spent) + float(held)
