"""The servers the toolkit starts as child processes (llama.cpp, a local model, Argilla and its Redis): a free
loopback port, a process group that dies with its parent, stopping that group, and the end of a log for an
error.

Top level rather than in :mod:`skillmix.llm`, because the review's local Argilla server and its Redis use
the same helpers. What only the OpenAI-compatible model servers of :mod:`skillmix.llm` share
(``EmbeddedServer``, ``LocalStudent``) is :class:`ChildServer`: launching into a log, waiting until the
model is listed, stopping, the context manager.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TypeVar


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def own_group_dying_with_parent() -> None:
    """In the child, before exec: a process group of its own, and (Linux) SIGTERM when the parent dies,
    so that a parent killed with SIGKILL (atexit never runs) does not leave the server behind."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def stop_group(process: subprocess.Popen, timeout: float) -> None:
    """Terminate ``process``'s group: SIGTERM, then SIGKILL; then any straggler of the group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # stragglers of the group, if the leader went first


def log_tail(path: Path | None, lines: int = 15) -> str:
    """The last non-empty lines of a server's log, for an error message."""
    try:
        text = path.read_text(errors="replace") if path is not None else ""
    except OSError:
        return "(no server log)"
    kept = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(kept) if kept else "(the server log is empty)"


def wait_until_serving(
    process: subprocess.Popen,
    base_url: str,
    model: str,
    timeout: float,
    log_path: Path | None,
    what: str,
    error: type[Exception] = RuntimeError,
) -> None:
    """Return once the OpenAI-compatible server ``process`` lists ``model`` at ``base_url/models``; raise
    ``error`` naming ``what`` (with the end of its log) if it exits first or is not ready in ``timeout`` s."""
    import json
    import time
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise error(
                f"{what} exited with code {code} before it was ready; "
                f"end of {log_path}:\n{log_tail(log_path)}"
            )
        try:
            with opener.open(f"{base_url}/models", timeout=2) as response:
                if model in [m.get("id") for m in json.load(response).get("data", [])]:
                    return
        except (OSError, ValueError, AttributeError):
            pass
        if time.monotonic() > deadline:
            raise error(f"{what} was not ready within {timeout:g}s; end of {log_path}:\n{log_tail(log_path)}")
        time.sleep(0.2)


_Server = TypeVar("_Server", bound="ChildServer")


class ChildServer:
    """What the model servers run as child processes share (the embedded llama.cpp, a local model):
    launching into a log, waiting until the model is served, stopping the process group, removing a
    temporary log after a clean run, and the context manager.

    A subclass sets ``process``, ``log_path``, ``_temporary_log`` and ``_ready`` in ``__init__`` and defines
    ``start()``: usually :meth:`_spawn`, then :meth:`_wait_serving`. It may change ``stop_timeout``,
    ``error`` (the exception raised) and ``log_prefix`` (the name of a temporary log).
    """

    stop_timeout = 10.0
    error: type[Exception] = RuntimeError
    log_prefix = "skillmix-server-"
    process: subprocess.Popen | None
    log_path: Path | None
    _temporary_log: bool
    _ready: bool

    def start(self) -> ChildServer:
        raise NotImplementedError

    def _spawn(self, argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
        """Run ``argv`` in a process group of its own that dies with this thread, its output appended to
        ``log_path`` (a temporary file when None), stopped when this process exits."""
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=self.log_prefix, suffix=".log")
            os.close(fd)
            self.log_path, self._temporary_log = Path(name), True
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    preexec_fn=own_group_dying_with_parent,
                )
            except OSError as exc:
                raise self.error(f"cannot start {what}: {exc}") from None
        self._stop_at_exit()

    def _wait_serving(self, base_url: str, model: str, timeout: float, what: str) -> None:
        """Wait until the spawned server lists ``model``; stop it and raise ``error`` if it dies first or is
        not ready within ``timeout`` seconds."""
        if self.process is None:
            raise self.error(f"{what} has not been launched")
        try:
            wait_until_serving(self.process, base_url, model, timeout, self.log_path, what, self.error)
        except BaseException:
            self.stop()
            raise
        self._ready = True

    def _stop_at_exit(self) -> None:
        """Stop the server when this process exits, if nothing stopped it before (``start()`` calls it)."""
        atexit.register(self.stop)

    def stop(self, timeout: float | None = None) -> None:
        """Terminate the server's process group (SIGTERM, then SIGKILL); safe to call twice."""
        process, self.process = self.process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        stop_group(process, self.stop_timeout if timeout is None else timeout)
        if self._ready and self._temporary_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)  # kept when the server failed: errors point to it
        self._ready = False

    def __enter__(self: _Server) -> _Server:
        return self.start()  # type: ignore[return-value]

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
