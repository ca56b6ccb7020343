"""Progress bars per stage, fed by the rows each distilabel step process records in the run's cache file.

distilabel runs every step in its own process; the steps count the rows they finish in the SQLite file
that also holds the request cache, and a thread of the main process turns the counts into one bar per
stage (rows done, with ok / failed, and kept / rejected / failed for the last stage).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from skillmix.cache import RequestCache

STAGES = ("round1", "round2", "grade", "decide")


class StageProgress:
    def __init__(self, cache_path: Path, run_id: str, total: int, interval: float = 0.5) -> None:
        self.cache_path, self.run_id, self.total, self.interval = cache_path, run_id, total, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skillmix-progress", daemon=True)

    def __enter__(self) -> StageProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

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
        cache = RequestCache(self.cache_path)
        try:
            while True:
                stopping = self._stop.wait(self.interval)
                counts = cache.progress(self.run_id)
                for stage, bar in bars.items():
                    done = counts.get(stage, {})
                    bar.n = sum(done.values())
                    if stage == "decide":
                        bar.set_postfix(
                            kept=done.get("kept", 0),
                            rejected=done.get("rejected", 0),
                            failed=done.get("failed", 0),
                            refresh=False,
                        )
                    else:
                        bar.set_postfix(ok=done.get("ok", 0), failed=bar.n - done.get("ok", 0), refresh=False)
                    bar.refresh()
                if stopping:
                    return
        finally:
            cache.close()
            for bar in bars.values():
                bar.close()
