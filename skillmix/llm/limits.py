"""Requests and tokens per minute for a whole run: one-minute windows shared by every process of the run.

The windows live in the run's request cache file (table ``rate_events``), so the three stages of a dataset
build, each in its own distilabel process, draw on one limit: ``--requests-per-minute R`` means at most R
requests in any minute of the run, not R per stage. A request enters the window with an estimate of its
tokens, which the reply's usage then corrects; and when its reply comes, its time moves to the reply's,
so that it stays in the window a full minute after the server saw it, however long it took to get there.
"""

from __future__ import annotations

import asyncio
import time

from skillmix.llm.cache import RequestCache

WINDOW_SECONDS = 60.0
SLACK_SECONDS = 1.0  # a request reaches the server a moment after it entered the window: keep a margin


class SharedRateLimiter:
    """Sliding one-minute windows over requests and tokens in ``cache``, shared by all its processes."""

    def __init__(self, cache: RequestCache, rpm: float | None, tpm: float | None, scope: str = "run") -> None:
        self.cache, self.rpm, self.tpm, self.scope = cache, rpm, tpm, scope

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    async def acquire(self, tokens: int) -> int | None:
        """Wait until a request of ``tokens`` fits in the window; returns its event id (None: no limits)."""
        if not self.active:
            return None
        while True:
            granted, wait = self._try(tokens)
            if granted is not None:
                return granted
            await asyncio.sleep(max(0.01, wait))

    def correct(self, event: int | None, tokens: int | None = None) -> None:
        """The request is answered: its window starts now, with the tokens the reply says it used."""
        if event is None:
            return
        with self.cache.transaction() as db:
            db.execute(
                "UPDATE rate_events SET at = ?, tokens = COALESCE(?, tokens) WHERE id = ?",
                (time.time(), tokens, event),
            )

    def _try(self, tokens: int) -> tuple[int | None, float]:
        span = WINDOW_SECONDS + SLACK_SECONDS
        with self.cache.transaction() as db:
            now = time.time()
            db.execute("DELETE FROM rate_events WHERE scope = ? AND at <= ?", (self.scope, now - span))
            events = db.execute(
                "SELECT at, tokens FROM rate_events WHERE scope = ? ORDER BY at", (self.scope,)
            ).fetchall()
            over_rpm = self.rpm is not None and len(events) >= self.rpm
            over_tpm = self.tpm is not None and sum(n for _, n in events) + tokens > self.tpm
            if not (over_rpm or over_tpm) or not events:
                cursor = db.execute(
                    "INSERT INTO rate_events (scope, at, tokens) VALUES (?, ?, ?)", (self.scope, now, tokens)
                )
                return int(cursor.lastrowid or 0), 0.0
        oldest = events[0][0] if not over_rpm else events[len(events) - int(self.rpm or 0)][0]
        return None, oldest + span - now
