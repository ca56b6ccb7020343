"""Headless Chromium driven over the DevTools protocol, to check that a web UI renders.

::

    from skillmix.review.browser import Chromium

    with Chromium() as browser:  # Debian's `chromium`, a fresh profile, no sandbox (runs as root in CI)
        page = browser.open("http://127.0.0.1:6900/sign-in")
        browser.wait_for(page, "document.body.innerText.includes('Sign in')")
        png = browser.screenshot(page)

The protocol runs over a pipe (``--remote-debugging-pipe``: the browser reads commands on its file
descriptor 3 and writes answers on 4, one JSON message per NUL-terminated chunk), so no port is opened and
no websocket library is needed. Commands are sent one at a time and their answer awaited; events are
dropped. The browser runs in a process group of its own that gets SIGTERM when this process dies.
Failures raise :class:`BrowserError` with one line.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from skillmix.processes import own_group_dying_with_parent

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    """The browser cannot be started, or a page did not do what was awaited."""


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) executable on PATH, or None."""
    return next((path for name in EXECUTABLES if (path := shutil.which(name))), None)


class Chromium:
    """Headless Chromium with a DevTools connection over a pipe, as a context manager."""

    def __init__(self, executable: str | None = None, *, size: tuple[int, int] = (1280, 900)) -> None:
        self.executable = executable or find_chromium()
        self.size = size
        self.process: subprocess.Popen[bytes] | None = None
        self._profile: str | None = None
        self._to_browser = self._from_browser = -1
        self._buffer = b""
        self._next_id = 0

    def start(self) -> Chromium:
        if self.executable is None:
            raise BrowserError(f"no Chromium found on PATH (tried {', '.join(EXECUTABLES)})")
        self._profile = tempfile.mkdtemp(prefix="skillmix-chromium-")
        commands_read, self._to_browser = os.pipe()
        self._from_browser, answers_write = os.pipe()

        def child_setup() -> None:  # the pipes become the browser's fds 3 and 4
            own_group_dying_with_parent()
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (commands_read, answers_write)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        width, height = self.size
        argv = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
        ]
        try:
            self.process = subprocess.Popen(
                [*argv, "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=child_setup,
            )  # fmt: skip
        except OSError as exc:
            raise BrowserError(f"cannot start {self.executable}: {exc}") from None
        finally:
            os.close(commands_read)
            os.close(answers_write)
        self.send("Browser.getVersion", timeout=30)
        return self

    def send(
        self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30
    ) -> dict:
        """Send one DevTools command and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"the browser is gone ({method}): {exc}") from None
        deadline = time.monotonic() + timeout
        while True:
            answer = self._receive(deadline, method)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
                return answer.get("result", {})

    def _receive(self, deadline: float, method: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError(f"no answer from the browser to {method}")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(f"the browser closed its DevTools pipe ({method})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> str:
        """Open ``url`` in a new tab; returns the tab's session id for the other methods."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.navigate(session, url)
        return session

    def navigate(self, session: str, url: str) -> None:
        result = self.send("Page.navigate", {"url": url}, session=session)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")

    def evaluate(self, session: str, expression: str) -> Any:
        """The value of a JavaScript expression in the tab (awaited when it is a promise)."""
        params = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        result = self.send("Runtime.evaluate", params, session=session)
        if "exceptionDetails" in result:
            detail = result["exceptionDetails"]
            raise BrowserError(f"JavaScript error: {detail.get('exception', {}).get('description', detail)}")
        return result.get("result", {}).get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 60, interval: float = 0.25) -> Any:
        """Evaluate ``expression`` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrowserError):  # a page being replaced has no context for a moment
                if value := self.evaluate(session, expression):
                    return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out after {timeout:g}s waiting for: {expression}")
            time.sleep(interval)

    def text(self, session: str) -> str:
        return self.evaluate(session, "document.body ? document.body.innerText : ''") or ""

    def screenshot(self, session: str, path: str | os.PathLike[str] | None = None) -> bytes:
        """A PNG of the tab's viewport (also written to ``path`` when given)."""
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session)
        png = base64.b64decode(shot["data"])
        if path is not None:
            Path(path).write_bytes(png)
        return png

    def stop(self) -> None:
        """Close the browser and remove its profile; safe to call twice."""
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(BrowserError):
                self.send("Browser.close", timeout=5)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    process.wait(5)
                    break
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(process.pid, sig)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        for fd in (self._to_browser, self._from_browser):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._to_browser = self._from_browser = -1
        if self._profile:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
