"""The batch mode's part of the request cache (:mod:`skillmix.pipelines.batches`, batch files): each
request's line before its batch (or batch file) is sent, and each batch. :class:`BatchLedger` is a part of
:class:`skillmix.llm.cache.RequestCache`, whose connection (``_db``), lock (``_lock``) and ``transaction``
it uses."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from skillmix.llm.cache_sql import put_response, settle_reservation


class BatchLedger:
    """The ``batch_lines`` and ``batches`` tables of a :class:`skillmix.llm.cache.RequestCache`."""

    _lock: Any

    def _db(self) -> sqlite3.Connection:  # the RequestCache's
        raise NotImplementedError

    def transaction(self) -> Any:  # the RequestCache's
        raise NotImplementedError

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
                settle_reservation(db, *settle)
            if answer is not None:
                put_response(db, key, *answer)
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


def _set_lines(db: sqlite3.Connection, keys: list[str], state: str, values: dict[str, Any]) -> None:
    sets = ", ".join(["state = ?", *(f"{name} = ?" for name in values)])
    db.executemany(
        f"UPDATE batch_lines SET {sets} WHERE key = ?", [(state, *values.values(), key) for key in keys]
    )
