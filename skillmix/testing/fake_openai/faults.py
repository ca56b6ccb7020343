"""Fault injection: :class:`Fault` rules, :func:`parse_fault` (the ``--fault`` command-line form) and the
OpenAI-style error bodies of the statuses a fault (or the server) answers with.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skillmix.testing.fake_openai.responders import Reply
from skillmix.testing.fake_openai.wire import _unit

__all__ = ["Fault", "parse_fault"]

_ERROR_TYPES: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout", None),
    409: ("conflict_error", None),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
}


@dataclass(frozen=True)
class Fault:
    """A fault rule: which requests it hits and what they get instead of (or on top of) the responder's reply.

    Selection (all that are given must hold):

    * ``match``: a substring of the last user message;
    * ``every=n``: the n-th, 2n-th, ... distinct request key *that this rule's* ``match`` *lets through*,
      in first-seen order (``every=1``: all of them);
    * ``rate=p``: the keys whose hash with ``seed`` falls below ``p`` (deterministic, about ``p`` of them);
    * ``attempts``: only the first ``attempts`` attempts of a key (default 1: a retry of the same request
      body gets the normal reply); ``None`` means every attempt.

    Effect: a ``status`` other than 200, ``content``, ``raw_body`` or ``refusal`` replace the reply (an error
    status uses ``content`` as the error message); otherwise the responder's reply is kept and ``hang`` /
    ``finish_reason`` / ``retry_after`` are applied to it. ``hang`` always applies.
    """

    status: int | None = None
    retry_after: float | None = None
    hang: float | None = None
    content: str | None = None
    raw_body: str | None = None
    refusal: str | None = None
    finish_reason: str | None = None
    every: int | None = None
    rate: float | None = None
    attempts: int | None = 1
    seed: int = 0
    match: str | None = None

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValueError(f"Fault.every must be >= 1, got {self.every}")
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"Fault.rate must be in [0, 1], got {self.rate}")
        if self.attempts is not None and self.attempts < 0:
            raise ValueError(f"Fault.attempts must be >= 0 or None, got {self.attempts}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError(f"Fault.status must be an HTTP status, got {self.status}")
        effects = (self.status, self.hang, self.content, self.raw_body, self.refusal, self.finish_reason)
        if all(e is None for e in effects) and self.retry_after is None:
            raise ValueError(
                "a Fault needs an effect: status, hang, content, raw_body, refusal or finish_reason"
            )

    def matches(self, last_user: str) -> bool:
        return self.match is None or self.match in last_user

    def selects(self, key: str, ordinal: int | None, attempt: int) -> bool:
        """Whether the request with ``key`` (this rule's ``ordinal``-th distinct key, 0-based) is hit."""
        if ordinal is None:  # the rule's ``match`` did not let this request through
            return False
        if self.attempts is not None and attempt >= self.attempts:
            return False
        if self.every is not None and (ordinal + 1) % self.every != 0:
            return False
        return self.rate is None or _unit(f"fault-rate\0{self.seed}\0{key}") < self.rate

    def apply(self, make_reply: Callable[[], Reply]) -> Reply:
        replaces = (self.status is not None and self.status != 200) or any(
            v is not None for v in (self.content, self.raw_body, self.refusal)
        )
        if replaces:
            return Reply(
                content=self.content,
                status=200 if self.status is None else self.status,
                retry_after=self.retry_after,
                hang=self.hang,
                finish_reason=self.finish_reason or "stop",
                refusal=self.refusal,
                raw_body=self.raw_body,
            )
        reply = make_reply()
        changes: dict[str, Any] = {}
        if self.hang is not None:
            changes["hang"] = self.hang
        if self.finish_reason is not None:
            changes["finish_reason"] = self.finish_reason
        if self.retry_after is not None:
            changes["retry_after"] = self.retry_after
        return dataclasses.replace(reply, **changes)


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    text = message or f"The fake server answers {status} ({kind})."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


_FAULT_KEYS = {
    "status": int,
    "retry_after": float,
    "hang": float,
    "seconds": float,
    "content": str,
    "raw_body": str,
    "body": str,
    "refusal": str,
    "finish_reason": str,
    "every": int,
    "rate": float,
    "attempts": str,
    "seed": int,
    "match": str,
}
_FAULT_SPLIT_RE = re.compile(r":(?=[a-z_]+=)")
_DEFAULT_MALFORMED = '{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"index'


def parse_fault(spec: str) -> Fault:
    """A :class:`Fault` from ``KIND[:key=value]...``.

    ``KIND`` is an HTTP status (``429``), ``hang`` (``seconds=`` or ``hang=``, default 30), ``malformed``
    (a truncated JSON body, or ``content=`` for malformed *content* in a valid reply, or ``body=`` for a
    body of your own), ``refusal``, or ``custom`` (the keys alone decide). Keys: ``every``, ``rate``,
    ``attempts`` (a number or ``none``), ``seed``, ``match``, ``retry_after``, ``hang``, ``content``,
    ``raw_body``/``body``, ``refusal``, ``finish_reason``, ``status``. A ``:`` only separates keys when a
    ``key=`` follows it, and ``\\n`` in a value is a newline. Example: ``429:every=3:retry_after=0.5``.
    """
    kind, *pairs = _FAULT_SPLIT_RE.split(spec.strip())
    kind = kind.strip().lower()
    values: dict[str, Any] = {}
    for pair in pairs:
        name, _, raw = pair.partition("=")
        name = name.strip().replace("-", "_")
        if name not in _FAULT_KEYS:
            raise ValueError(
                f"unknown fault key {name!r} in {spec!r} (known: {', '.join(sorted(_FAULT_KEYS))})"
            )
        raw = raw.replace("\\n", "\n")
        try:
            value: Any = _FAULT_KEYS[name](raw)
        except ValueError:
            raise ValueError(f"bad value {raw!r} for {name!r} in fault {spec!r}") from None
        if name == "attempts":
            value = None if raw.strip().lower() in ("none", "all", "inf", "forever") else int(raw)
        name = {"seconds": "hang", "body": "raw_body"}.get(name, name)
        values[name] = value
    if kind.isdigit():
        values.setdefault("status", int(kind))
    elif kind == "hang":
        values.setdefault("hang", 30.0)
    elif kind == "malformed":
        if "content" not in values:
            values.setdefault("raw_body", _DEFAULT_MALFORMED)
    elif kind == "refusal":
        values.setdefault("refusal", "I can't help with that.")
    elif kind != "custom":
        kinds = "STATUS, hang, malformed, refusal, custom"
        raise ValueError(f"unknown fault kind {kind!r} in {spec!r} ({kinds})")
    try:
        return Fault(**values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad fault {spec!r}: {exc}") from None
