"""Progress bars per stage, fed by the rows each distilabel step process records in the run's progress log.

distilabel runs every step in its own process; the steps count the rows they finish in
:class:`ProgressLog`, a folder of append-only text files in the run's work folder (``progress/``, a file
per run, stage and process, a status a line), and a thread of the main process turns the counts into one
bar per stage (rows done, with ok / failed, and kept / rejected / failed for the last stage).

Plain files, not SQLite: distilabel forks its step processes while this thread is reading, and a fork that
lands while a thread holds one of SQLite's process-wide locks leaves the child waiting on it forever.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

STAGES = ("round1", "round2", "grade", "decide")
PROGRESS_DIR = "progress"


class ProgressLog:
    """Rows finished per run, stage and status, in ``folder``; safe for any number of processes."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def record(self, run: str, stage: str, statuses: list[str]) -> None:
        """One line per row that finished ``stage`` in run ``run`` (appended, so writers never collide)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{run}.{stage}.{os.getpid()}.log", "a", encoding="utf-8") as handle:
            handle.write("".join(f"{status}\n" for status in statuses))

    def counts(self, run: str) -> dict[str, dict[str, int]]:
        """``{stage: {status: rows}}`` of run ``run``."""
        out: dict[str, Counter[str]] = {}
        for path in self.folder.glob(f"{run}.*.log"):
            stage = path.name.split(".")[1]
            out.setdefault(stage, Counter()).update(path.read_text(encoding="utf-8").split())
        return {stage: dict(counter) for stage, counter in out.items()}


def after_fork(pipeline: Any, start: Any) -> None:
    """Call ``start`` once ``pipeline`` has started its processes, keeping the SIGINT handler in place.

    A fork copies every lock of the parent as it is at that moment: a thread of ours holding one (stderr's,
    a file's, SQLite's) while distilabel forks would leave the child waiting on it forever. distilabel
    forks its manager and its workers, then installs its SIGINT handler: that hook is where the threads
    of this run may start, and where the handler in place (skillmix's own) is kept instead of distilabel's.
    """

    def hook() -> Any:
        start()
        return signal.getsignal(signal.SIGINT)

    pipeline._handle_keyboard_interrupt = hook


class StageProgress:
    """A thread drawing one bar per stage from the :class:`ProgressLog` at ``path`` while the run lasts."""

    def __init__(self, path: Path, run_id: str, total: int, interval: float = 0.5) -> None:
        self.path, self.run_id, self.total, self.interval = path, run_id, total, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._guarded, name="skillmix-progress", daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> StageProgress:
        return self

    def start(self) -> None:
        """Start drawing: only once distilabel has forked its processes (see :func:`after_fork`)."""
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        if self.error is not None and exc[0] is None:  # a broken display fails the run, never silently
            raise RuntimeError(f"the progress display failed: {self.error!r}") from self.error

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by __exit__ in the main thread
            self.error = exc

    def _run(self) -> None:
        from tqdm import tqdm

        bars = {
            stage: tqdm(
                total=self.total,
                desc=f"{stage:<7}",
                unit="row",
                file=sys.stderr,
                disable=None,
                position=i,
                leave=True,
            )
            for i, stage in enumerate(STAGES)
        }
        log = ProgressLog(self.path)
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                counts = log.counts(self.run_id)
                for stage, bar in bars.items():
                    _draw(bar, stage, counts.get(stage, {}))
                if stopping:
                    return
        finally:
            for bar in bars.values():
                bar.close()


def _draw(bar: Any, stage: str, done: dict[str, int]) -> None:
    bar.n = sum(done.values())
    if stage == "decide":
        outcomes = {name: done.get(name, 0) for name in ("kept", "rejected", "failed")}
        bar.set_postfix(**outcomes, refresh=False)
    elif done.get("deferred"):  # batch mode: rows waiting for their batch are not failures
        ok, waiting = done.get("ok", 0), done["deferred"]
        bar.set_postfix(ok=ok, waiting=waiting, failed=bar.n - ok - waiting, refresh=False)
    else:
        bar.set_postfix(ok=done.get("ok", 0), failed=bar.n - done.get("ok", 0), refresh=False)
    bar.refresh()
