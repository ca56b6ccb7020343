"""Pytest fixtures for tests against a real local Argilla server and headless Chromium.

Load them with ``pytest_plugins = ["argilla_fixtures"]`` (in a test module, or in tests/conftest.py).

``argilla_server`` starts :class:`skillmix.review.server.ArgillaServer` once per test session, in a
temporary data folder, with argilla-server's environment at ``.venv-argilla`` (installed on first use;
``SKILLMIX_ARGILLA_VENV`` moves it). ``chromium`` is the path of a Chromium executable. What is missing
(``redis-server``, ``chromium``, the Argilla SDK, the network to install argilla-server) skips the tests
that need it, with the reason; with ``SKILLMIX_REQUIRE_SERVERS=1`` (set by ``.ci/run``) it fails them
instead, so CI always runs them for real. A server that is installed but does not start is always a failure.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from skillmix.review import venv as argilla_venv
from skillmix.review.browser import find_chromium
from skillmix.review.server import ArgillaServer, ArgillaServerError, missing_programs

REQUIRE = "SKILLMIX_REQUIRE_SERVERS"
ROOT = Path(__file__).resolve().parents[1]


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when ``SKILLMIX_REQUIRE_SERVERS=1``."""
    if os.environ.get(REQUIRE) == "1":
        pytest.fail(f"{reason} ({REQUIRE}=1 turns this skip into a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def argilla_sdk():
    """The ``argilla`` SDK module (the ``review`` extra)."""
    try:
        import argilla
    except ImportError:
        unavailable("the Argilla SDK is not installed: pip install -e '.[review]'")
    return argilla


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory):
    """A running local Argilla (``.api_url``, ``.api_key``, ``.owner``) for the whole session."""
    if missing := missing_programs():
        unavailable(f"{', '.join(missing)} is not installed: apt-get install {' '.join(missing)}")
    venv = Path(os.environ.get("SKILLMIX_ARGILLA_VENV") or ROOT / argilla_venv.DEFAULT_VENV)
    started = time.monotonic()
    try:
        argilla_venv.ensure_venv(venv)
    except argilla_venv.VenvError as exc:
        unavailable(f"cannot install argilla-server: {exc}")
    installed = time.monotonic()
    server = ArgillaServer(tmp_path_factory.mktemp("argilla"), venv=venv)
    try:
        server.start()
    except ArgillaServerError as exc:
        pytest.fail(f"the local Argilla server did not start: {exc}", pytrace=False)
    server.timings = {"install": installed - started, "start": time.monotonic() - installed}
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Chromium (Debian's ``chromium`` package)."""
    path = find_chromium()
    if path is None:
        unavailable("chromium is not installed: apt-get install chromium")
    return path
