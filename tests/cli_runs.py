"""Running `skillmix dataset` as a user would, against the tests' fake OpenAI server (for several modules)."""

from __future__ import annotations

import os
import subprocess
import sys
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
    return subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=timeout)
