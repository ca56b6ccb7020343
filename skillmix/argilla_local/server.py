"""A local Argilla server: argilla-server 2.8.0 with SQLite, its own Redis and an SQL search engine.

::

    from skillmix.argilla_local.server import ArgillaServer

    with ArgillaServer() as server:  # a temporary data folder, free loopback ports
        client = argilla.Argilla(api_url=server.api_url, api_key=server.api_key)

Starting runs, each in a process group of its own that gets SIGTERM when this process dies: ``redis-server``
on a free port (no persistence), one rq worker for argilla-server's background jobs, and the argilla-server
app, which first migrates the database and makes the owner user
(:mod:`skillmix.argilla_local.argilla_process`).
:meth:`ArgillaServer.start` returns once ``/api/v1/status`` answers and the owner's key is accepted;
:meth:`ArgillaServer.stop` (also at exit) ends them all. With ``data_dir`` the data persists between runs:
``home/argilla.db``, ``owner.json`` (username, password and API key of the owner, mode 0600, made on first
start) and ``logs/``; without, a temporary folder is removed at the end. argilla-server's environment is
installed by :func:`skillmix.argilla_local.venv.ensure_venv` on first use. Every failure raises
:class:`ArgillaServerError` with a one-line message (plus the end of the log of the process that failed).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from skillmix.argilla_local import venv as argilla_venv
from skillmix.argilla_local.sqlsearch import ENGINE_NAME
from skillmix.processes import free_port, log_tail, own_group_dying_with_parent, stop_group

OWNER = "owner"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ArgillaServerError(RuntimeError):
    """The local Argilla server cannot be installed, started or reached."""


def missing_programs() -> list[str]:
    """The system programs the server needs that are not on PATH (``redis-server``)."""
    return [name for name in ("redis-server",) if shutil.which(name) is None]


def owner_credentials(path: Path) -> dict[str, str]:
    """The owner's username, password and API key from ``path``; made (mode 0600) on first use."""
    if path.is_file():
        return json.loads(path.read_text())
    password, api_key = secrets.token_urlsafe(18), f"sm.{secrets.token_urlsafe(32)}"
    owner = {"username": OWNER, "password": password, "api_key": api_key}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(owner, handle)
    return owner


def http_get(url: str, api_key: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """``GET url`` on loopback (never through a proxy): the status code and the body."""
    request = urllib.request.Request(url, headers={"X-Argilla-Api-Key": api_key} if api_key else {})
    try:
        with _NO_PROXY.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class ArgillaServer:
    """argilla-server and its Redis and worker on loopback, as a context manager (see the module doc)."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        venv: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute() if data_dir is not None else None
        self.venv = Path(venv).absolute() if venv is not None else None
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.owner: dict[str, str] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._temporary = data_dir is None

    @property
    def api_url(self) -> str:
        if self.port is None:
            raise ArgillaServerError("the Argilla server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def api_key(self) -> str:
        if not self.owner:
            raise ArgillaServerError("the Argilla server has not been started")
        return self.owner["api_key"]

    def start(self) -> ArgillaServer:
        """Install if needed, start Redis, the database, the server and the worker; wait until ready."""
        if self.processes:
            return self
        if missing := missing_programs():
            raise ArgillaServerError(f"{', '.join(missing)} is not installed (apt-get install redis-server)")
        try:
            python = argilla_venv.ensure_venv(self.venv, log=sys.stderr)
        except argilla_venv.VenvError as exc:
            raise ArgillaServerError(str(exc)) from None
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="skillmix-argilla-"))
        for folder in ("home", "logs", "redis", "pythonpath"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self.owner = owner_credentials(self.data_dir / "owner.json")
        self.port = self.port or free_port(self.host)
        atexit.register(self.stop)
        try:
            self._start_all(python)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_all(self, python: Path) -> None:
        redis_port = free_port(self.host)
        self._spawn("redis", ["redis-server", *self._redis_options(redis_port)], env=dict(os.environ))
        self._wait_redis(redis_port)
        env = self._argilla_env(redis_port)
        module = [str(python), "-m", "skillmix.argilla_local.argilla_process"]
        self._spawn("worker", [*module, "worker"], env=env)
        owner_file = str(self.data_dir / "owner.json")
        options = ["--owner", owner_file, "--host", self.host, "--port", str(self.port)]
        self._spawn("server", [*module, "server", *options], env=env)
        self._wait_ready()

    def _redis_options(self, port: int) -> list[str]:
        return [
            "--port",
            str(port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir / "redis"),
            "--daemonize",
            "no",
        ]

    def _argilla_env(self, redis_port: int) -> dict[str, str]:
        """The environment of argilla-server's processes: its settings, and only ``skillmix`` importable."""
        shim = self.data_dir / "pythonpath" / "skillmix"
        package = Path(__file__).resolve().parents[1]
        if not shim.exists() or shim.resolve() != package:
            shim.unlink(missing_ok=True)
            shim.symlink_to(package, target_is_directory=True)
        env = {
            name: value for name, value in os.environ.items() if not name.startswith(("PYTHON", "VIRTUAL_"))
        }
        home = self.data_dir / "home"
        return env | {
            "PYTHONPATH": str(shim.parent),
            "PYTHONSAFEPATH": "1",
            "ARGILLA_HOME_PATH": str(home),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{home / 'argilla.db'}?check_same_thread=False",
            "ARGILLA_REDIS_URL": f"redis://{self.host}:{redis_port}/0",
            "ARGILLA_SEARCH_ENGINE": ENGINE_NAME,
            "ARGILLA_SHOW_HUGGINGFACE_SPACE_PERSISTENT_STORAGE_WARNING": "false",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "COLUMNS": "160",  # the width of argilla-server's (rich) log lines
        }

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_path = self.data_dir / "logs" / f"{name}.log"
        with open(log_path, "ab") as log:
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.data_dir,
                    preexec_fn=own_group_dying_with_parent,
                )
            except OSError as exc:
                raise ArgillaServerError(f"cannot start {name}: {exc}") from None
        self.processes[name] = process
        return process

    def _failure(self, name: str, message: str) -> ArgillaServerError:
        log_path = self.data_dir / "logs" / f"{name}.log"
        return ArgillaServerError(f"{message} (log: {log_path})\n{log_tail(log_path)}")

    def _check_alive(self) -> None:
        for name in ("redis", "worker", "server"):
            process = self.processes.get(name)
            if process is not None and (code := process.poll()) is not None:
                raise self._failure(name, f"{name} exited with code {code} while Argilla was starting")

    def _wait_redis(self, port: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError), socket.create_connection((self.host, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.1)
        raise self._failure("redis", f"redis-server did not answer on port {port} within 30s")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError, ValueError):
                if http_get(f"{self.api_url}/api/v1/status", timeout=2)[0] == 200:
                    code, _ = http_get(f"{self.api_url}/api/v1/me", api_key=self.api_key)
                    if code != 200:
                        raise ArgillaServerError(f"{self.api_url} refused the owner's API key (HTTP {code})")
                    return
            time.sleep(0.25)
        raise self._failure("server", f"argilla-server was not ready within {self.startup_timeout:g}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server, the worker and Redis (SIGTERM, then SIGKILL); safe to call twice."""
        atexit.unregister(self.stop)
        for name in ("server", "worker", "redis"):
            if (process := self.processes.pop(name, None)) is not None:
                stop_group(process, timeout)
        if self._temporary and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> ArgillaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
