"""Running `skillmix dataset` as a user would, against the tests' fake OpenAI server (for several modules)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def cli_env() -> dict[str, str]:
    """The test's environment without an OpenAI key or URL (the flags name the fake server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def dataset_cmd(server: Any, out: Path, *extra: str) -> list[str]:
    """``skillmix dataset --out OUT`` with the fake server as teacher and judge, then ``extra``."""
    return [
        sys.executable, "-m", "skillmix.cli", "dataset", "--out", str(out),
        "--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
        "--judge-base-url", server.base_url, *extra,
    ]  # fmt: skip


def run_cli(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; if it outlives ``timeout``, fail with every process's stacks.

    The CLI prints all threads' stacks on SIGUSR1 (in the step processes too), so a hang names its lock.
    """
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
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
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
