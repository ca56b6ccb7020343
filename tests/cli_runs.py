"""Running ``skillmix`` as a user would, against the tests' fake servers (for several modules).

Two ways, one result type (``subprocess.CompletedProcess``: ``returncode``, ``stdout``, ``stderr``):

* :func:`run_cli` starts a process: for what only a process shows (signals, kills, locks, exit at the
  interpreter's end, what reaches the terminal from distilabel's step processes, ``torchrun``);
* :func:`run_here` calls :func:`skillmix.cli.main` in this process with the same environment changes and
  the output captured: the same command without paying again for Python and the imports of distilabel,
  datasets and torch (about 3 s a call). Everything else should use it.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "skillmix.cli"]
HUB_TOKEN = "hf_skillmixTestToken0123456789abcdef"  # the write token of the tests' loopback Hub
OPENAI_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL")  # the flags name the fake server, never the environment


def cli_env(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The test's environment without an OpenAI key or URL, then ``changes`` (``None``: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in OPENAI_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def hub_changes(hub: Any, home: Path, token: str | None = HUB_TOKEN) -> dict[str, str | None]:
    """The environment that points ``huggingface_hub`` and ``datasets`` at the loopback ``hub`` (caches in
    ``home``), with ``token`` (``None``: no token at all), no progress bars."""
    changes = dict(hub.client_env(home))
    changes.update({k: None for k in os.environ if k.startswith(("HF_", "HUGGING")) and k not in changes})
    changes.update(HF_TOKEN=token, HF_HUB_DISABLE_PROGRESS_BARS="1")
    return changes


def hub_env(hub: Any, home: Path, token: str | None = HUB_TOKEN) -> dict[str, str]:
    """A subprocess's environment for the loopback ``hub`` (see :func:`hub_changes`)."""
    return cli_env(hub_changes(hub, home, token))


def dataset_cmd(server: Any, out: Path, *extra: str) -> list[str]:
    """``skillmix dataset --out OUT`` with the fake server as teacher and judge, then ``extra``."""
    return [
        *CLI, "dataset", "--out", str(out),
        "--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
        "--judge-base-url", server.base_url, *extra,
    ]  # fmt: skip


def run_cli(
    cmd: list[str], timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; if it outlives ``timeout``, fail with every process's stacks.

    The CLI prints all threads' stacks on SIGUSR1 (in the step processes too), so a hang names its lock.
    """
    env = dict(env) if env is not None else cli_env()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip
    stdout, stderr = communicate(proc, cmd, timeout)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def communicate(proc: subprocess.Popen, cmd: list[str], timeout: float) -> tuple[str, str]:
    """``proc.communicate()`` (a process group leader started with pipes); past ``timeout``, every process
    of its group prints its threads' stacks (SIGUSR1), is killed, and the test fails naming the dump."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(proc.pid)],
                              capture_output=True, text=True).stdout  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGUSR1)
        time.sleep(3)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        dump = Path(os.environ.get("SKILLMIX_HANG_DUMP", "/tmp/skillmix-hang.txt"))
        dump.write_text(f"{' '.join(cmd)}\n{tree}\n--- stderr ---\n{stderr}\n--- stdout ---\n{stdout}")
        message = f"hung for {timeout} s; processes and stacks in {dump}:\n{tree}\n{stderr[-6000:]}"
        raise AssertionError(message) from None


@contextlib.contextmanager
def environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``changes`` (``None``: unset) inside the block, as it was after it."""
    saved = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_here(cmd: list[str], changes: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess:
    """``cmd`` (``[*CLI, ...]`` or the arguments alone) through :func:`skillmix.cli.main` in this process,
    with the OpenAI variables unset and ``changes`` applied for the call; stdout and stderr captured."""
    from skillmix.cli import main

    argv = cmd[len(CLI) :] if cmd[: len(CLI)] == CLI else cmd
    out, err = io.StringIO(), io.StringIO()
    unset = dict.fromkeys(OPENAI_ENV)
    with (
        environment({**unset, **(changes or {})}),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors (exit code 2)
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(cmd, code, out.getvalue(), err.getvalue())
