"""A local Argilla kept running in the background: what ``make argilla`` and ``make argilla-stop`` run.

::

    python -m skillmix.argilla_local.service start [--data .argilla] [--port 6900]  # prints 2 export lines
    python -m skillmix.argilla_local.service stop
    python -m skillmix.argilla_local.service status

``start`` installs argilla-server's environment if needed (in the foreground, so its progress shows), then
launches ``service run`` detached from the terminal: that process holds an
:class:`~skillmix.argilla_local.server.ArgillaServer` on the data folder until it gets SIGTERM, and records
its pid and URL in ``DATA/service.json``. Once the server answers, ``start`` prints ``ARGILLA_API_URL=...``
and ``ARGILLA_API_KEY=...`` on stdout (``export $(make -s argilla)``) and the rest on stderr. The owner's
credentials stay in ``DATA/owner.json`` (mode 0600; the UI login is the username and password there). The port
is ``--port`` when it is free, else any free one. Bad input or a failed start prints one line ``skillmix:
error: ...`` and exits with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from skillmix.argilla_local import venv as argilla_venv
from skillmix.argilla_local.server import ArgillaServer, ArgillaServerError, http_get, missing_programs
from skillmix.processes import free_port

MODULE = "skillmix.argilla_local.service"  # how `service run` is started, and recognised by its command line
DEFAULT_DATA = ".argilla"
DEFAULT_PORT = 6900


class ServiceError(RuntimeError):
    """The background Argilla cannot be started, found or stopped."""


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live ``skillmix.argilla_local.service`` process (not a pid reused by another)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # Linux: check what the pid runs now
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return MODULE.encode() in cmdline and not cmdline.startswith(b"\0")
    return True


def running(data: Path) -> dict | None:
    """The state of the background server on ``data`` (pid, api_url) if it is alive, else None."""
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((data / "service.json").read_text())
        if _alive(int(state["pid"])):
            return state
    return None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) != 0


def _exports(data: Path, state: dict) -> str:
    key = json.loads((data / "owner.json").read_text())["api_key"]
    return f"ARGILLA_API_URL={state['api_url']}\nARGILLA_API_KEY={key}"


def start(data: Path, venv: Path | None, port: int, timeout: float) -> str:
    """Start the background server (or find it running); returns the two export lines."""
    if (state := running(data)) is not None:
        state = _wait_ready(data, None, timeout)
        print(f"Argilla is already running at {state['api_url']} (pid {state['pid']}).", file=sys.stderr)
        return _exports(data, state)
    if missing := missing_programs():
        raise ServiceError(f"{', '.join(missing)} is not installed (apt-get install {' '.join(missing)})")
    try:
        argilla_venv.ensure_venv(venv, log=sys.stderr)
    except argilla_venv.VenvError as exc:
        raise ServiceError(str(exc)) from None
    port = port if port and _port_free("127.0.0.1", port) else free_port()
    (data / "logs").mkdir(parents=True, exist_ok=True)
    for name in ("service.json", "service.error"):
        (data / name).unlink(missing_ok=True)
    argv = [sys.executable, "-m", MODULE, "run", "--data", str(data), "--port", str(port)]
    argv += ["--venv", str(venv)] if venv else []
    with open(data / "logs" / "service.log", "ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    state = _wait_ready(data, process, timeout)
    print(
        f"Argilla is running at {state['api_url']} (UI login in {data / 'owner.json'}); "
        "stop it with `make argilla-stop`.",
        file=sys.stderr,
    )
    return _exports(data, state)


def _wait_ready(data: Path, process: subprocess.Popen[bytes] | None, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (state := running(data)) is None or state.get("ready") is not True:
        if (process is not None and process.poll() is not None) or (process is None and state is None):
            with contextlib.suppress(OSError):
                raise ServiceError((data / "service.error").read_text().strip())
            raise ServiceError(f"the Argilla service exited before it was ready; see {data / 'logs'}")
        if time.monotonic() > deadline:
            stop(data)
            raise ServiceError(f"Argilla did not start within {timeout:g}s; see {data / 'logs'}")
        time.sleep(0.3)
    return state


def run(data: Path, venv: Path | None, port: int) -> None:
    """Hold the server in the foreground until SIGTERM or SIGINT (what ``start`` launches)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    state_path = data / "service.json"
    state_path.write_text(json.dumps({"pid": os.getpid(), "ready": False}))
    try:
        with ArgillaServer(data, venv=venv, port=port) as server:
            state_path.write_text(json.dumps({"pid": os.getpid(), "ready": True, "api_url": server.api_url}))
            while True:
                time.sleep(3600)
    except ArgillaServerError as exc:
        print(exc, flush=True)  # the whole message, with the end of the failed process's log
        (data / "service.error").write_text(str(exc).splitlines()[0] + "\n")
        raise SystemExit(2) from None
    finally:
        state_path.unlink(missing_ok=True)


def stop(data: Path, timeout: float = 30.0) -> bool:
    """Stop the background server on ``data``; returns whether one was running."""
    state = running(data)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    (data / "service.json").unlink(missing_ok=True)
    return True


def status(data: Path) -> int:
    """Print whether the background server answers; exit code 0 if it does, 1 if not."""
    state = running(data)
    try:
        alive = state is not None and http_get(f"{state['api_url']}/api/v1/version")[0] == 200
    except OSError:
        alive = False
    print(f"running at {state['api_url']}" if alive else "not running")
    return 0 if alive else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog=f"python -m {MODULE}",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["start", "stop", "status", "run"])
    parser.add_argument("--data", type=Path, default=Path(DEFAULT_DATA), help=f"data folder ({DEFAULT_DATA})")
    parser.add_argument("--venv", type=Path, default=None, help="argilla-server's venv (.venv-argilla)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port, if free (6900)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the start")
    args = parser.parse_args(argv)
    data = args.data.absolute()
    try:
        if args.command == "start":
            print(start(data, args.venv, args.port, args.timeout))
        elif args.command == "stop":
            print("Argilla stopped." if stop(data) else "No Argilla is running.", file=sys.stderr)
        elif args.command == "status":
            return status(data)
        else:
            run(data, args.venv, args.port)
    except (ServiceError, OSError) as exc:
        print(f"skillmix: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
