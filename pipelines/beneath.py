"""What every run changes around distilabel 1.5.3 (pinned, unmaintained), and puts back.

:func:`distilabel_run` wraps ``Pipeline.run``:

* **the HTTP client imported before the fork**: the openai SDK imports its resources lazily
  (``client.chat`` imports ``openai.resources.chat`` on first use); imported after distilabel forks a
  process per step, each LLM step paid for ``import openai`` and its resources again, about 1.5 s of CPU
  each, on every run (py-spy on a 4-row build: 4.4 s of 11.8);
* **short polls**: distilabel waits in fixed sleeps between two looks at its steps, 2.5 s until every step
  of a stage is loaded and 0.5 s per step until it has finished (its only two sleeps, in
  ``distilabel/pipeline/base.py``); every run paid for them (about 2.5 s of a 4-row build's 5.2 s). They
  now look again every :data:`POLL_SECONDS`; a look reads a dict, so the CPU cost is nil;
* **only our lines on the terminal**: no progress bars of ``datasets`` (distilabel loads its result with
  it), no log lines of distilabel or of the HTTP clients below it;
* **the caller's logging given back**: distilabel's ``setup_logging`` (at every run) clears the root
  logger's handlers, sets its level to ``DISTILABEL_LOG_LEVEL`` and silences library loggers (datasets,
  httpx, fsspec, asyncio, ...) at CRITICAL, for good: in the caller's process (a notebook, a test) every
  warning was dropped afterwards (seen: mkdocs' strict build in the same test process stopped seeing its
  own warnings). The root logger's level and handlers, those loggers' levels and the progress bars of
  ``datasets`` are restored.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import time
from collections.abc import Iterator
from typing import Any

POLL_SECONDS = 0.05  # distilabel's own: 2.5 s (steps loaded?) and 0.5 s (steps finished?)
QUIET = ("httpx", "httpcore", "openai")  # their log lines are ours to say (statuses), not theirs


@contextlib.contextmanager
def distilabel_run() -> Iterator[None]:
    """Around one ``Pipeline.run``: see the module docstring."""
    _import_before_the_fork()
    _poll_faster()
    with _logging_kept():
        _quiet_third_party()
        try:
            yield
        finally:
            _drop_distilabel_handlers()


def _import_before_the_fork() -> None:
    import openai.resources.chat
    import openai.resources.completions  # noqa: F401


class _ShortSleeps:
    """The ``time`` module as distilabel's pipeline sees it, with every sleep cut to ``POLL_SECONDS``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, POLL_SECONDS))


def _poll_faster() -> None:
    """distilabel's two polling sleeps cut to :data:`POLL_SECONDS` (idempotent)."""
    import distilabel.pipeline.base as base

    base.time = _ShortSleeps()  # type: ignore[assignment]


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """The root logger's level and handlers, and the levels of the loggers distilabel silences, as they were
    before the block."""
    from datasets.utils import logging as datasets_logging
    from distilabel.utils import logging as distilabel_logging

    names = [*distilabel_logging._SILENT_LOGGERS, *QUIET, "argilla.client.feedback.dataset.local.mixins"]
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    others = {name: (logging.getLogger(name).level, logging.getLogger(name).disabled) for name in names}
    bars = datasets_logging.is_progress_bar_enabled()
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        for name, (old, disabled) in others.items():
            logging.getLogger(name).setLevel(old)
            logging.getLogger(name).disabled = disabled
        if bars:
            datasets_logging.enable_progress_bar()


def _quiet_third_party() -> None:
    from datasets.utils import logging as datasets_logging

    os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")
    datasets_logging.disable_progress_bar()
    datasets_logging.set_verbosity_error()
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)


def _drop_distilabel_handlers() -> None:
    """distilabel leaves a queue handler on the root logger that logs errors after run(), and handlers of its
    own on its loggers: removed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.handlers.QueueHandler):
            root.removeHandler(handler)
    for name in ("distilabel", "distilabel.pipeline"):
        logging.getLogger(name).handlers.clear()
