"""Fault injection and request accounting: :class:`HubRequest`, the faults of
:meth:`FakeHubServer.fail_next <skillmix.testing.fake_hub.FakeHubServer.fail_next>`, and the part of the
server that records requests and matches them against the faults."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote


class HubRequest(NamedTuple):
    """One request as the server answered it."""

    method: str
    path: str
    status: int


@dataclass
class _Fault:
    substring: str
    status: int
    remaining: int
    method: str | None


class _RequestLog:
    """The requests answered so far and the faults to inject (attributes set by :class:`_HubState`)."""

    _lock: threading.RLock
    _requests: list[HubRequest]
    _faults: list[_Fault]

    _inflight: int = 0  # requests being answered: recorded once their answer is sent

    @property
    def requests(self) -> list[HubRequest]:
        """A copy of the requests answered so far, in order, as ``(method, path, status)``.

        A client can read an answer a moment before the server thread records it: wait (2 s at most) for
        the requests being answered, so that what a test reads after a call includes that call."""
        deadline = time.monotonic() + 2.0
        while self._inflight and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._lock:
            return list(self._requests)

    def _begin(self) -> None:
        with self._lock:
            self._inflight += 1

    def fail_next(
        self, path_substring: str, status: int = 500, count: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next ``count`` requests whose path contains ``path_substring`` (and whose method is
        ``method``, when given) with ``status``, before anything of them is read or applied."""
        with self._lock:
            self._faults.append(_Fault(path_substring, status, count, method.upper() if method else None))

    def count(self, *, method: str | None = None, path_contains: str = "", status: int | None = None) -> int:
        """How many recorded requests match."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and path_contains in r.path
            and (status is None or r.status == status)
        )

    def _match_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            decoded = unquote(path)
            for fault in self._faults:
                if fault.remaining <= 0 or (fault.method is not None and fault.method != method):
                    continue
                if fault.substring in path or fault.substring in decoded:
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return fault
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(HubRequest(method, path, status))
            self._inflight -= 1
