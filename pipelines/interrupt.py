"""Ctrl-C and SIGTERM: stop sending, let the replies in flight land in the cache, stop, write nothing.

While a build runs, SIGINT and SIGTERM are handled here, never by distilabel (whose own handler would stop
the pipeline and hand back a partial result that looks like failed rows). The first signal

1. creates the run's *stop file*, which every client checks before it sends a request (so no new request
   leaves, and the rows still to do end at once with the status ``interrupted``);
2. asks the running pipeline to stop, which lets the requests in flight finish and land in the cache;
3. arms a timer: if the pipeline has not stopped ``GRACE_SECONDS`` later, it is stopped hard.

Then :class:`Interrupted` is raised: the caller leaves the output folder as it was and exits 130 (SIGINT)
or 143 (SIGTERM). A second signal stops at once.

A process forked while a run is guarded (distilabel's step workers and its manager) starts with the
default handlers instead. A Python handler runs only when its thread comes back to the interpreter: a
SIGTERM that lands just before a worker blocks on a lock is noted and never acted on, and distilabel's
teardown (which terminates its workers and then joins them) then waits forever. The default action
needs no interpreter: the kernel ends the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STOP_FILE = "stop"
GRACE_SECONDS = 10.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_guarding = False  # whether this process runs a guarded block now (read in forked children)
_hooked = False  # whether the fork hook below is registered in this process


def _defaults_in_child() -> None:
    """In a child forked during a guarded run: SIGINT and SIGTERM act as by default (see above)."""
    global _guarding
    if _guarding:
        _guarding = False
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_DFL)


class Interrupted(Exception):
    """The run was interrupted by ``signum``; ``done`` of ``total`` rows were finished (when known)."""

    def __init__(self, signum: int, hard: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.hard = signum, hard
        self.done: int | None = None
        self.total: int | None = None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Guard:
    """The signal handling of one run (see the module docstring); ``pipeline`` is the one running now."""

    def __init__(self, work: Path) -> None:
        self.stop_file = work / STOP_FILE
        self.pid = os.getpid()
        self.signum: int | None = None
        self.pipeline: Any = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.pid:  # a child forked before the guard: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is not None or self.pipeline is None:
            self.signum = self.signum or signum
            raise Interrupted(self.signum, hard=self.pipeline is not None)
        self.signum = signum
        self.stop_file.touch()
        self.pipeline._stop()  # distilabel's own graceful stop: the requests in flight finish
        signal.signal(signal.SIGALRM, self._on_timer)
        signal.setitimer(signal.ITIMER_REAL, GRACE_SECONDS)

    def _on_timer(self, signum: int, frame: Any) -> None:
        raise Interrupted(self.signum or signal.SIGINT, hard=True)

    @contextlib.contextmanager
    def running(self, pipeline: Any) -> Iterator[None]:
        """While ``pipeline`` runs: a signal stops it gently; after it, :class:`Interrupted` is raised."""
        self.pipeline = pipeline
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.pipeline = None
        if self.signum is not None:
            raise Interrupted(self.signum)

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal came in between pipeline runs."""
        if self.signum is not None:
            raise Interrupted(self.signum)


@contextlib.contextmanager
def guarded(work: Path) -> Iterator[Guard]:
    """Handle SIGINT and SIGTERM as above for the duration of the block."""
    global _guarding, _hooked
    guard = Guard(work)
    guard.stop_file.unlink(missing_ok=True)
    if not _hooked:
        os.register_at_fork(after_in_child=_defaults_in_child)
        _hooked = True
    previous = {sig: signal.signal(sig, guard._on_signal) for sig in SIGNALS}
    _guarding = True
    try:
        yield guard
    finally:
        _guarding = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        guard.stop_file.unlink(missing_ok=True)


def kill_children() -> None:
    """End every process this one started (distilabel's step processes and its manager): after a hard
    stop they would otherwise outlive the run, holding its folder's lock."""
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()


def stop_requested(work: str | Path | None) -> bool:
    """Whether the run whose work folder is ``work`` was asked to stop (checked before every request)."""
    return work is not None and (Path(work) / STOP_FILE).exists()
