"""argilla-server's own virtual environment: created and filled on first use, reused afterwards.

argilla-server 2.8.0 pins versions of FastAPI, SQLAlchemy, pydantic and friends that skillmix's environment
does not share (and it needs ``click<8.2``), so it lives in a virtual environment of its own, by default
``./.venv-argilla`` (``SKILLMIX_ARGILLA_VENV`` moves it)::

    from skillmix.argilla_local.venv import ensure_venv

    python = ensure_venv()  # the first call installs (a minute or two); later calls only check a stamp file

An installation is complete when the stamp file ``.skillmix-installed`` holds the requirements it was made
for; an interrupted one is redone. A lock file beside the environment keeps two processes (``make argilla``
and the tests) from installing at once. Failures raise :class:`VenvError` with one line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REQUIREMENTS = ("argilla-server==2.8.0", "click<8.2")
STAMP = ".skillmix-installed"
DEFAULT_VENV = ".venv-argilla"


class VenvError(RuntimeError):
    """argilla-server's virtual environment cannot be created or installed."""


def default_venv() -> Path:
    """``SKILLMIX_ARGILLA_VENV``, else ``.venv-argilla`` in the current folder."""
    return Path(os.environ.get("SKILLMIX_ARGILLA_VENV") or DEFAULT_VENV).absolute()


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_installed(venv: Path | None = None) -> bool:
    """Whether ``venv`` holds a complete installation of :data:`REQUIREMENTS` (nothing is run)."""
    venv = Path(venv) if venv is not None else default_venv()
    stamp = venv / STAMP
    return venv_python(venv).exists() and stamp.is_file() and stamp.read_text().split() == list(REQUIREMENTS)


@contextlib.contextmanager
def _locked(venv: Path) -> Iterator[None]:
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], what: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VenvError(f"{what}: {exc}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("ERROR")]
        last = lines[-1] if lines else (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise VenvError(f"{what} failed (exit {result.returncode}): {last}")


def ensure_venv(venv: str | os.PathLike[str] | None = None, log: object = None) -> Path:
    """The interpreter of argilla-server's environment, after creating and installing it if needed.

    ``log`` (a writable text stream, e.g. ``sys.stderr``) gets one line when an installation starts.
    """
    venv = Path(venv).absolute() if venv is not None else default_venv()
    if is_installed(venv):
        return venv_python(venv)
    with _locked(venv):
        if is_installed(venv):  # another process finished it while we waited
            return venv_python(venv)
        if log is not None:
            print(f"Installing {' '.join(REQUIREMENTS)} into {venv} (once; a minute or two)...", file=log)
        (venv / STAMP).unlink(missing_ok=True)
        if not venv_python(venv).exists():
            _run([sys.executable, "-m", "venv", str(venv)], f"creating the virtual environment {venv}")
        pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, *REQUIREMENTS], f"installing {', '.join(REQUIREMENTS)} into {venv}")
        (venv / STAMP).write_text("\n".join(REQUIREMENTS) + "\n")
    return venv_python(venv)
