"""Pytest fixtures for tests against a real local Argilla server and headless Chromium.

Load them with ``pytest_plugins = ["argilla_fixtures"]`` (in a test module, or in tests/conftest.py).

``argilla_server`` starts :class:`skillmix.argilla_local.server.ArgillaServer` once per test session, in a
temporary data folder, with argilla-server's environment at ``.venv-argilla`` (installed on first use;
``SKILLMIX_ARGILLA_VENV`` moves it). ``chromium`` is the path of the system's Chromium; ``chromium_page`` a
fresh page of it, headless, driven by Playwright (which never downloads a browser of its own: it is given the
system's executable, so ``playwright install`` is never needed); ``signed_in_page`` that page with the owner
logged into the Argilla UI. What is missing (``redis-server``, ``chromium``, Playwright, the Argilla SDK, the
network to install argilla-server) skips the tests that need it, with the reason; with
``SKILLMIX_REQUIRE_SERVERS=1`` (set by ``.ci/run``) it fails them instead, so CI always runs them for real. A
server that is installed but does not start is always a failure.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

import pytest

from skillmix.argilla_local import venv as argilla_venv
from skillmix.argilla_local.server import ArgillaServer, ArgillaServerError, missing_programs

REQUIRE = "SKILLMIX_REQUIRE_SERVERS"
ROOT = Path(__file__).resolve().parents[1]
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")  # Debian's package first
SIGNED_IN = "!!localStorage.getItem('auth._token.local')"  # where the UI (nuxt auth) keeps its token
TEXT = "document.body ? document.body.innerText : ''"  # what a page shows


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
    path = next((found for name in CHROMIUMS if (found := shutil.which(name))), None)
    if path is None:
        unavailable("chromium is not installed: apt-get install chromium")
    return path


@pytest.fixture
def chromium_page(chromium):
    """A page (1280x900) of a fresh headless Chromium driven by Playwright, closed after the test."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


@pytest.fixture
def signed_in_page(chromium_page, argilla_server, tmp_path):
    """``chromium_page`` with the owner logged into the Argilla UI (its ``?auth=`` login)."""
    from playwright.sync_api import Error as PlaywrightError

    page, owner = chromium_page, argilla_server.owner
    auth = base64.b64encode(f"{owner['username']}:{owner['password']}".encode()).decode()
    try:
        page.goto(f"{argilla_server.api_url}/sign-in?auth={auth}", wait_until="commit")
        # signed in once the page has left /sign-in: leaving earlier aborts the login, which signs out
        page.wait_for_function(f"{SIGNED_IN} && location.pathname != '/sign-in'", timeout=60_000, polling=250)
    except PlaywrightError as exc:
        page.screenshot(path=tmp_path / "sign-in.png")
        pytest.fail(
            f"{exc.message}; at {page.url}: {page.evaluate(TEXT)[:500]!r} ({tmp_path / 'sign-in.png'})"
        )
    return page
