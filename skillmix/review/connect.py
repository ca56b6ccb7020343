"""The connection to an Argilla server for ``skillmix review``: the SDK, the client, one-line errors.

The server and the key come from ``ARGILLA_API_URL`` and ``ARGILLA_API_KEY`` (a local Argilla:
``export $(make -s argilla)``; a Hugging Face Space: its URL and the key from its "My settings"). A
**private Space** also needs the Hub's ``Authorization: Bearer <HF token>`` on every request: it is sent
when the URL is a ``*.hf.space`` and ``HF_TOKEN`` is set; any other headers a proxy in front of Argilla
needs go in ``ARGILLA_EXTRA_HEADERS``, a JSON object of header names and values (its ``Authorization``, if
any, wins over ``HF_TOKEN``'s). Header values are never printed. Every
failure of the SDK or of the connection is turned into a :class:`ReviewError` with one line, which the CLI
prints as ``skillmix: error: ...`` with exit code 2.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

RETRIES = 3  # connection attempts before an unreachable server is reported (the SDK's default is 5)
TIMEOUT = 60


class ReviewError(ValueError):
    """The review cannot be pushed or pulled; the message says why (one line)."""


def sdk() -> ModuleType:
    """The ``argilla`` SDK (the ``review`` extra), with its log quieted to errors."""
    try:
        import argilla
    except ImportError:
        raise ReviewError("the Argilla SDK is not installed: pip install -e '.[review]'") from None
    logging.getLogger("argilla.sdk").setLevel(logging.ERROR)
    return argilla


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = text.removeprefix("Argilla SDK error: ")
    return text.splitlines()[0][:300]


@contextlib.contextmanager
def argilla_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the SDK's and httpx's exceptions raised while ``doing`` into one-line :class:`ReviewError`."""
    import httpx
    from argilla._exceptions import ArgillaCredentialsError, ArgillaError

    try:
        with warnings.catch_warnings():  # the SDK warns, e.g. when a dataset is not found: None says it
            warnings.simplefilter("ignore")
            yield
    except ArgillaCredentialsError:
        raise ReviewError(
            f"Argilla at {url} refused the API key (check ARGILLA_API_KEY; a private Space needs HF_TOKEN)"
        ) from None
    except httpx.TransportError as exc:
        raise ReviewError(f"cannot reach Argilla at {url} while {doing}: {first_line(exc)}") from None
    except (ArgillaError, httpx.HTTPError) as exc:
        raise ReviewError(f"Argilla at {url} failed while {doing}: {first_line(exc)}") from None


def extra_headers(url: str, env: Mapping[str, str]) -> dict[str, str]:
    """The headers sent on every request besides the API key (module docstring)."""
    headers: dict[str, str] = {}
    token = env.get("HF_TOKEN", "").strip()
    host = (urlsplit(url).hostname or "").lower()
    if token and host.endswith(".hf.space"):
        headers["Authorization"] = f"Bearer {token}"
    text = env.get("ARGILLA_EXTRA_HEADERS", "").strip()
    if text:
        try:
            extra = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReviewError(
                f"ARGILLA_EXTRA_HEADERS is not JSON ({exc.msg} at character {exc.pos})"
            ) from None
        if not isinstance(extra, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) for k, v in extra.items()
        ):
            raise ReviewError(
                "ARGILLA_EXTRA_HEADERS must be a JSON object of header names and string values, e.g. "
                '{"Authorization": "Bearer ..."}'
            )
        for name, value in extra.items():  # the same header named in another case replaces the first
            headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
            headers[name] = value
    return headers


def connect(env: Mapping[str, str] | None = None) -> Any:
    """An ``argilla.Argilla`` client for ``ARGILLA_API_URL`` with ``ARGILLA_API_KEY``, checked to answer."""
    env = os.environ if env is None else env
    url, key = env.get("ARGILLA_API_URL", "").strip(), env.get("ARGILLA_API_KEY", "").strip()
    if not url:
        raise ReviewError(
            "ARGILLA_API_URL is not set: `export $(make -s argilla)` for a local Argilla, or set it and "
            "ARGILLA_API_KEY for yours (e.g. https://<owner>-<space>.hf.space)"
        )
    if not key:
        raise ReviewError(f"ARGILLA_API_KEY is not set (the API key for {url}, from its 'My settings')")
    headers = extra_headers(url, env)
    rg = sdk()
    with argilla_errors(url, "connecting"):
        client = rg.Argilla(api_url=url, api_key=key, timeout=TIMEOUT, retries=RETRIES, headers=headers)
        client.me  # noqa: B018 - the SDK checks the key at construction; this checks the server answers
    return client


def dataset_url(client: Any, dataset: Any) -> str:
    """The annotation page of ``dataset`` in the Argilla UI."""
    return f"{client.api_url.rstrip('/')}/dataset/{dataset.id}/annotation-mode"
