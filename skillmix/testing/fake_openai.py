"""A fake OpenAI-compatible HTTP server for tests and benchmarks: scripted replies, faults, exact accounting.

Tests and benchmarks start it themselves, on 127.0.0.1 and a free port, in a background thread::

    with FakeOpenAIServer(latency=0.2, faults=[Fault(status=429, every=3, retry_after=0.5)]) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        ...
        server.count(status=429), server.distinct_keys(), server.requests

or as a subprocess (``python -m skillmix.testing.fake_openai --port 0 --latency 0.2 --fault 429:every=3``),
which prints ``BASE_URL http://127.0.0.1:PORT/v1`` on its first stdout line and a JSON summary of the
request counts when it gets SIGTERM or SIGINT; ``--log FILE`` appends one JSON line per request.

Endpoints: ``POST /v1/chat/completions`` (the Chat Completions schema; ``stream``, ``n`` and ``max_tokens`` /
``max_completion_tokens`` are honoured, other fields are accepted and ignored), ``GET /v1/models`` and
``GET /v1/models/{id}``. Anything else is a 404 with an OpenAI-style error body. Tokens are counted as
whitespace-separated words (at least 1 per prompt and per completion).

Accounting. Every request is recorded as a :class:`RequestRecord` when the server has decided its answer
(before any latency or hang, so a request whose client gave up is still counted). Its ``key`` is the SHA-256
of the canonical JSON of the request body (``sort_keys``; for paths other than chat completions the method
and path are hashed in too), and ``attempt`` is how many earlier requests had the same key (0 the first
time), so faults can be deterministic per request and retries of one request can be counted.

Replies. A *responder* ``(body: dict) -> Reply | str`` decides what a chat completion answers; the default,
:class:`SkillMixResponder`, is a deterministic scripted "model" that understands the skillmix generation and
grader prompts. :class:`ScriptedResponder` replays a list of replies. :class:`Reply` can also ask for an
error status (with ``Retry-After``), a hang (to trigger client timeouts), a verbatim (malformed) body or a
refusal. :class:`Fault` rules, applied before the responder (first match wins), inject such replies into
every n-th distinct request or a hash-chosen fraction of them, on their first ``attempts`` attempts.

Only the standard library is used, so the server runs wherever the package does.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import http.server
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

__all__ = [
    "CHAT_PATH",
    "FakeOpenAIServer",
    "Fault",
    "Reply",
    "RequestRecord",
    "Responder",
    "ScriptedResponder",
    "SkillMixResponder",
    "main",
    "parse_fault",
    "request_key",
]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

Responder = Callable[[dict[str, Any]], "Reply | str"]

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
_WORD_RE = re.compile(r"\S+")


# ---------------------------------------------------------------------------------------------------------
# Replies, faults, records
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What the server answers to one chat completion request.

    * ``status`` 200 sends a ``chat.completion`` with ``content`` (cut to ``max_tokens`` words, with
      ``finish_reason="length"``, if the request asks for fewer); any other status sends an OpenAI-style
      error ``{"error": {"message": content or a default, "type": ..., "code": ...}}``;
    * ``retry_after`` adds a ``Retry-After`` header (seconds);
    * ``hang`` waits that many seconds before answering (to trigger client timeouts; stopping the server
      wakes the handler, which then closes the connection without an answer);
    * ``raw_body`` is sent verbatim with the given status as ``application/json`` (malformed JSON);
    * ``refusal`` sends ``message.refusal`` with ``content`` null and ``finish_reason="content_filter"``.
    """

    content: str | None = None
    status: int = 200
    retry_after: float | None = None
    hang: float | None = None
    finish_reason: str = "stop"
    refusal: str | None = None
    raw_body: str | None = None


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


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it.

    ``status`` is the status the server chose (recorded before any latency or hang, so it is there even if
    the client gave up); ``hung`` says the reply was held back by a ``hang``; ``at`` is the arrival time
    (``time.time()``); ``fault`` is the index of the fault rule that hit it, or None.
    """

    body: dict[str, Any]
    key: str
    attempt: int
    status: int
    at: float
    path: str = CHAT_PATH
    method: str = "POST"
    hung: bool = False
    fault: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "attempt": self.attempt,
            "status": self.status,
            "at": self.at,
            "path": self.path,
            "method": self.method,
            "hung": self.hung,
            "fault": self.fault,
        }


def request_key(body: Any, method: str = "POST", path: str = CHAT_PATH) -> str:
    """SHA-256 of the canonical JSON of ``body`` (method and path hashed in for other paths than chat)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    prefix = "" if (method, path) == ("POST", CHAT_PATH) else f"{method} {path}\n"
    return hashlib.sha256((prefix + canonical).encode("utf-8")).hexdigest()


def _unit(text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _words(text: str | None) -> int:
    return len(_WORD_RE.findall(text)) if text else 0


def _message_text(message: Any) -> str:
    """The text of a chat message (string content, or the text parts of a list content)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def last_user_message(body: dict[str, Any]) -> str:
    """The text of the last ``user`` message of a chat completion request ("" if there is none)."""
    for message in reversed(_messages(body)):
        if message.get("role") == "user":
            return _message_text(message)
    return ""


def _as_reply(value: Reply | str | None) -> Reply:
    if isinstance(value, Reply):
        return value
    if value is None or isinstance(value, str):
        return Reply(content=value)
    raise TypeError(f"a responder must return a Reply or a str, not {type(value).__name__}")


# ---------------------------------------------------------------------------------------------------------
# Responders
# ---------------------------------------------------------------------------------------------------------


class ScriptedResponder:
    """Returns ``replies`` in order, one per request (thread-safe); then starts over if ``cycle``, else 500s.

    ``calls`` counts the requests answered so far.
    """

    def __init__(self, replies: Sequence[str | Reply], cycle: bool = False) -> None:
        self.replies = list(replies)
        self.cycle = cycle
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply | str:
        with self._lock:
            index = self.calls
            self.calls += 1
        if self.replies and self.cycle:
            return self.replies[index % len(self.replies)]
        if index < len(self.replies):
            return self.replies[index]
        return Reply(status=500, content=f"ScriptedResponder: no reply left for request {index + 1}")


_OPENINGS = (
    "Anyone who has spent an evening on {topic} knows that patience, not talent, is the quiet engine of "
    "every small success",
    "When I think about {topic}, I picture a lantern that keeps burning long after the crowd has gone home",
    "People call {topic} a mere pastime, yet it has taught more of us about failure than any classroom",
    "Every afternoon given to {topic} is a small experiment in hope, and most experiments end in laughter",
    "My grandmother used to say that {topic} rewards the stubborn and forgives the clumsy",
    "The first lesson of {topic} is humility, and the last lesson is humility too",
    "Nobody warned me that {topic} would steal whole weekends and give back whole friendships",
    "There is an honest kind of tiredness that only {topic} can leave in your bones",
)
_CLOSINGS = (
    "If you keep at it the results arrive; you kept at it, so here they are",
    "Still, the old rule holds: nobody masters it alone, and nobody regrets trying",
    "The grey sky sulked above us, but the room itself was all warm light and loud voices",
    "Some chase perfection and find frustration, others chase joy and find skill",
    "The whole street seemed to lean in and listen while we argued about the details",
    "It asks for little money and a great deal of time, which is exactly why it matters",
)
_REVISIONS = (  # one sentence, shorter than any opening
    "In {topic}, patience turns each small failure into the next step",
    "{topic} rewards the stubborn, forgives the clumsy and outlasts the rain",
    "With {topic}, the hours feel short and the lessons feel long",
    "The town hall shrugs at {topic}, but every kitchen table knows its worth",
    "Loved by the patient and feared by the hurried, {topic} keeps teaching",
    "Whoever tries {topic} learns that small hands carry large hopes",
)
_GENERIC = (
    "Understood. This is a scripted reply from the fake OpenAI server.",
    "Here is a short scripted answer; the fake server does not think, it only replies.",
    "OK. The fake server received your message and answers with this fixed text.",
)
_TOPIC_RE = re.compile(r'\btopic\s+"([^"\n]+)"')
_QUOTED_RE = re.compile(r'"([^"\n]{1,80})"')
_TOPIC_LINE_RE = re.compile(r"^The topic:\s*(.+?)\s*$", re.M)
_SKILL_LINE_RE = re.compile(r"^\s*\d{1,2}\.\s+([^\n]+?)\.\s", re.M)
_GRADED_RE = re.compile(r"The text to grade:?\s*\n?<<<\n?(.*?)\n?>>>", re.S)


class SkillMixResponder:
    """A deterministic scripted "model" that answers the skillmix prompts.

    * Generation prompt (the last user message asks for ``Answer:`` and ``Explanation:`` and is not a grader
      prompt): ``"Answer: <one or two sentences on the topic>\\nExplanation: <...>"``, the topic taken from
      the quoted ``topic "..."`` in the prompt; in round 2 (the conversation has an assistant message) a
      different, one-sentence answer. The choice is a hash of the request body and ``seed``.
    * Grader prompt (contains "The text to grade"): one row per rubric item (the ``- `` lines after
      "Award 1 point ..."), as a ``| Criteria | Points Earned |`` table with a total row and an explanation,
      or as the JSON object when the prompt asks for ``"criteria"``. All points are 1 with probability
      ``accept_rate``, else one or two items are 0, decided by a hash of the graded text and ``seed`` (so
      grader runs of the same text agree whatever their temperature or seed).
    * Anything else: a short generic reply.
    """

    def __init__(self, seed: int = 0, accept_rate: float = 0.7) -> None:
        if not 0.0 <= accept_rate <= 1.0:
            raise ValueError(f"accept_rate must be in [0, 1], got {accept_rate}")
        self.seed = seed
        self.accept_rate = accept_rate

    def __call__(self, body: dict[str, Any]) -> Reply | str:
        prompt = last_user_message(body)
        if "The text to grade" in prompt:
            return self.grade(prompt)
        if "Answer:" in prompt and "Explanation:" in prompt:
            return self.generate(body, prompt)
        return _GENERIC[int(_unit(f"generic\0{self.seed}\0{request_key(body)}") * len(_GENERIC))]

    # -- generation ------------------------------------------------------------------------------------

    def generate(self, body: dict[str, Any], prompt: str) -> str:
        messages = _messages(body)
        user_texts = [_message_text(m) for m in messages if m.get("role") == "user"]
        topic = _find_topic([prompt, *user_texts])
        skills = _find_skills(user_texts)
        rng = random.Random(f"generate\0{self.seed}\0{request_key(body)}")
        if any(m.get("role") == "assistant" for m in messages):
            answer = rng.choice(_REVISIONS).format(topic=topic) + "."
            answer = answer[0].upper() + answer[1:]
        else:
            answer = rng.choice(_OPENINGS).format(topic=topic) + "."
            if rng.random() < 0.75:
                answer += " " + rng.choice(_CLOSINGS) + "."
        if skills:
            parts = [
                f"the text shows {name} in its {_ORDINALS[i % len(_ORDINALS)]} image"
                for i, name in enumerate(skills)
            ]
            explanation = "; ".join(parts) + f", all while staying on {topic}."
        else:
            explanation = f"The text stays on {topic} and keeps to the requested form."
        return f"Answer: {answer}\nExplanation: {explanation[0].upper()}{explanation[1:]}"

    # -- grading ---------------------------------------------------------------------------------------

    def points(self, graded_text: str, n_items: int) -> list[int]:
        """The scripted points of ``n_items`` rubric items for ``graded_text``."""
        if n_items <= 0:
            return []
        if _unit(f"accept\0{self.seed}\0{graded_text}") < self.accept_rate:
            return [1] * n_items
        rng = random.Random(f"reject\0{self.seed}\0{graded_text}")
        zeros = set(rng.sample(range(n_items), min(n_items, rng.choice((1, 2)))))
        return [0 if i in zeros else 1 for i in range(n_items)]

    def grade(self, prompt: str) -> str:
        graded = _GRADED_RE.search(prompt)
        if graded is not None:
            text = graded.group(1).strip()
        else:
            text = prompt.split("The text to grade", 1)[1].split("Award 1 point", 1)[0].strip(" :\n")
        items = _rubric_items(prompt) or ["Text makes sense"]
        points = self.points(text, len(items))
        missed = [item for item, p in zip(items, points, strict=True) if not p]
        if missed:
            explanation = (
                f"The text meets {sum(points)} of the {len(items)} criteria; it falls short on "
                + " and ".join(f"'{item}'" for item in missed)
                + ", which a careful reader would not recognise in it."
            )
        else:
            explanation = (
                "Every criterion is clearly met; each skill can be recognised and the text is on topic."
            )
        if '"criteria"' in prompt:
            criteria = [{"criterion": item, "points": p} for item, p in zip(items, points, strict=True)]
            return json.dumps({"criteria": criteria, "total": sum(points), "explanation": explanation})
        rows = [f"| {item} | {p} |" for item, p in zip(items, points, strict=True)]
        table = [
            "| Criteria | Points Earned |",
            "|---|---|",
            *rows,
            f"| Total Points Earned | {sum(points)} |",
        ]
        return "\n".join(table) + f"\n\nExplanation: {explanation}"


_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")


def _find_topic(texts: Iterable[str]) -> str:
    texts = list(texts)
    for pattern in (_TOPIC_RE, _TOPIC_LINE_RE, _QUOTED_RE):
        for text in texts:
            m = pattern.search(text)
            if m and m.group(1).strip():
                return m.group(1).strip()
    return "the subject"


def _find_skills(texts: Iterable[str]) -> list[str]:
    for text in texts:
        names = _SKILL_LINE_RE.findall(text)
        if names:
            return [name.strip() for name in names]
    return []


def _rubric_items(prompt: str) -> list[str]:
    """The ``- `` lines right after the "Award 1 point ..." line of a grader prompt."""
    items: list[str] = []
    started = False
    for line in prompt.split("\n"):
        if not started:
            started = line.lstrip().startswith("Award 1 point")
            continue
        stripped = line.strip()
        if stripped.startswith("- "):
            items.append(stripped[2:].strip())
        elif items:
            break
    return items


# ---------------------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------------------


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512  # many clients connect at once; the default backlog of 5 drops SYNs
    owner: FakeOpenAIServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up with getfqdn, which can stall without a resolver.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
            return  # the client went away, or the server is stopping
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.owner._handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.owner._handle(self, "DELETE")

    def do_PATCH(self) -> None:
        self.server.owner._handle(self, "PATCH")

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


class FakeOpenAIServer:
    """An OpenAI-compatible server on ``host`` and ``port`` (0: a free one), served from a background thread.

    Use it as a context manager (or :meth:`start` / :meth:`stop`). ``responder`` decides chat completion
    replies (default :class:`SkillMixResponder`), ``latency`` seconds are waited before every answer,
    ``faults`` (:class:`Fault` rules, first match wins) are applied before the responder, ``model`` is the
    model listed by ``/v1/models`` (and named in replies to requests without one), and with ``api_key`` set
    requests without ``Authorization: Bearer <api_key>`` get a 401. ``log_path`` appends one JSON line per
    request (flushed at once).
    """

    def __init__(
        self,
        responder: Responder | None = None,
        latency: float = 0.0,
        faults: Sequence[Fault] = (),
        model: str = "fake-teacher",
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_path: str | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency}")
        self.responder: Responder = responder if responder is not None else SkillMixResponder()
        self.latency = float(latency)
        self.faults: tuple[Fault, ...] = tuple(faults)
        self.model = model
        self.api_key = api_key
        self.host = host
        self.port = port
        self.log_path = log_path
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._seen: Counter[str] = Counter()
        self._ordinals: list[dict[str, int]] = [{} for _ in self.faults]
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log: TextIO | None = None

    # -- life cycle ------------------------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        if self._httpd is not None:
            raise RuntimeError("the server is already started")
        if self.log_path is not None:
            self._log = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.owner = self
        self.port = httpd.server_port
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wakes waiting (latency / hang) handlers, closes open connections. Idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (the port is known once the server is started)."""
        return f"http://{self.host}:{self.port}/v1"

    # -- accounting ------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the records of all requests so far, in the order their answers were decided."""
        with self._lock:
            return list(self._records)

    def count(self, status: int | None = None, *, path: str | None = None) -> int:
        """Requests answered with ``status`` (None: any status), to ``path`` (None: any path)."""
        with self._lock:
            return sum(
                1
                for r in self._records
                if (status is None or r.status == status) and (path is None or r.path == path)
            )

    def distinct_keys(self, path: str | None = None) -> set[str]:
        """The request keys seen (to ``path`` only, e.g. ``CHAT_PATH``, if given)."""
        with self._lock:
            return {r.key for r in self._records if path is None or r.path == path}

    def summary(self) -> dict[str, Any]:
        """Counts of all requests: total, by status, by path, distinct chat keys, max attempt, hung."""
        with self._lock:
            records = list(self._records)
        chat = [r for r in records if r.path == CHAT_PATH]
        return {
            "requests": len(records),
            "chat_requests": len(chat),
            "distinct_keys": len({r.key for r in chat}),
            "by_status": {str(k): v for k, v in sorted(Counter(r.status for r in records).items())},
            "by_path": dict(sorted(Counter(r.path for r in records).items())),
            "retries": sum(1 for r in chat if r.attempt > 0),
            "max_attempt": max((r.attempt for r in chat), default=0),
            "hung": sum(1 for r in records if r.hung),
        }

    def clear(self) -> None:
        """Forget all records, attempt counts and fault orderings (e.g. between benchmark runs)."""
        with self._lock:
            self._records.clear()
            self._seen.clear()
            self._ordinals = [{} for _ in self.faults]

    # -- request handling ------------------------------------------------------------------------------

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _handle(self, handler: _Handler, method: str) -> None:
        arrived = time.time()
        path = unquote(urlsplit(handler.path).path).rstrip("/") or "/"
        raw = handler.read_body()
        body: dict[str, Any]
        parse_error = None
        try:
            decoded = json.loads(raw) if raw.strip() else {}
            body = decoded if isinstance(decoded, dict) else {"_body": decoded}
            if not isinstance(decoded, dict):
                parse_error = "the request body must be a JSON object"
        except (ValueError, UnicodeDecodeError) as exc:
            body = {"_invalid_json": raw[:2000].decode("utf-8", "replace")}
            parse_error = f"could not parse the JSON body of your request: {exc}"
        key = request_key(body, method, path)
        is_chat = (method, path) == ("POST", CHAT_PATH)
        last_user = last_user_message(body) if is_chat else ""
        with self._lock:
            attempt = self._seen[key]
            self._seen[key] += 1
            ordinals: list[int | None] = []
            for i, fault in enumerate(self.faults):
                if is_chat and fault.matches(last_user):
                    ordinals.append(self._ordinals[i].setdefault(key, len(self._ordinals[i])))
                else:
                    ordinals.append(None)

        fault_index: int | None = None
        authorized = self.api_key is None or handler.headers.get("Authorization") == f"Bearer {self.api_key}"
        if not authorized:
            reply = Reply(status=401, content="Incorrect API key provided.")
        elif method == "GET" and path == MODELS_PATH:
            reply = Reply(raw_body=json.dumps(self._models()))
        elif method == "GET" and path.startswith(MODELS_PATH + "/"):
            name = path[len(MODELS_PATH) + 1 :]
            if name == self.model:
                reply = Reply(raw_body=json.dumps(self._model_object()))
            else:
                reply = Reply(status=404, content=f"The model '{name}' does not exist")
        elif not is_chat:
            reply = Reply(status=404, content=f"Unknown request URL: {method} {path}.")
        elif parse_error is not None:
            reply = Reply(status=400, content=parse_error)
        elif not _messages(body):
            reply = Reply(status=400, content="'messages' must be a non-empty array of message objects.")
        else:
            for i, fault in enumerate(self.faults):
                if fault.selects(key, ordinals[i], attempt):
                    fault_index = i
                    break
            make = functools.partial(self._respond, body)
            reply = self.faults[fault_index].apply(make) if fault_index is not None else make()

        hung = bool(reply.hang and reply.hang > 0)
        record = RequestRecord(body, key, attempt, reply.status, arrived, path, method, hung, fault_index)
        with self._lock:
            self._records.append(record)
            if self._log is not None:
                self._log.write(json.dumps(record.to_json()) + "\n")
                self._log.flush()

        wait = self.latency + (reply.hang or 0.0)
        if wait > 0 and self._stopping.wait(wait):
            handler.close_connection = True  # stopping: leave without an answer
            return
        if self._stopping.is_set():
            handler.close_connection = True
            return
        self._send(handler, reply, body if is_chat else None, key, attempt)

    def _respond(self, body: dict[str, Any]) -> Reply:
        try:
            return _as_reply(self.responder(body))
        except Exception as exc:  # a broken responder is a 500 the test can see, not a dead handler
            return Reply(status=500, content=f"the responder raised {type(exc).__name__}: {exc}")

    def _models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._model_object()]}

    def _model_object(self) -> dict[str, Any]:
        return {"id": self.model, "object": "model", "created": 1700000000, "owned_by": "skillmix-fake"}

    def _send(
        self, handler: _Handler, reply: Reply, body: dict[str, Any] | None, key: str, attempt: int
    ) -> None:
        headers = {"x-request-id": f"req_{key[:24]}_{attempt}"}
        if reply.retry_after is not None:
            headers["Retry-After"] = format(reply.retry_after, "g")
        content_type = "application/json"
        if reply.raw_body is not None:
            payload = reply.raw_body.encode("utf-8")
        elif reply.status != 200:
            payload = json.dumps(_error_body(reply.status, reply.content)).encode("utf-8")
        else:
            assert body is not None
            completion = self._completion(body, reply, key, attempt)
            if body.get("stream"):
                content_type = "text/event-stream"
                payload = _sse(completion, body).encode("utf-8")
            else:
                payload = json.dumps(completion).encode("utf-8")
        handler.send_response(reply.status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()

    def _completion(self, body: dict[str, Any], reply: Reply, key: str, attempt: int) -> dict[str, Any]:
        content, finish = reply.content, reply.finish_reason
        if reply.refusal is not None:
            content, finish = None, "content_filter"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if content is not None and isinstance(limit, int) and limit > 0:
            spans = list(_WORD_RE.finditer(content))
            if len(spans) > limit:
                content, finish = content[: spans[limit - 1].end()], "length"
        n = body.get("n") if isinstance(body.get("n"), int) and body.get("n", 1) > 0 else 1
        message = {"role": "assistant", "content": content, "refusal": reply.refusal}
        prompt_tokens = max(1, sum(_words(_message_text(m)) for m in _messages(body)))
        completion_tokens = max(1, _words(content if content is not None else reply.refusal)) * n
        model = body.get("model") if isinstance(body.get("model"), str) and body.get("model") else self.model
        return {
            "id": f"chatcmpl-{key[:24]}{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": i, "message": dict(message), "logprobs": None, "finish_reason": finish}
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_skillmix_fake",
        }


def _error_body(status: int, message: str | None) -> dict[str, Any]:
    kind, code = _ERROR_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    text = message or f"The fake server answers {status} ({kind})."
    return {"error": {"message": text, "type": kind, "param": None, "code": code}}


def _sse(completion: dict[str, Any], body: dict[str, Any]) -> str:
    """The chat.completion as a ``text/event-stream`` of chunks (one content chunk per choice)."""
    base = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    events = []
    for choice in completion["choices"]:
        message = choice["message"]
        delta: dict[str, Any] = {"role": "assistant", "content": message["content"]}
        if message["refusal"] is not None:
            delta["refusal"] = message["refusal"]
        events.append(
            {**base, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": None}]}
        )
        end = {"index": choice["index"], "delta": {}, "finish_reason": choice["finish_reason"]}
        events.append({**base, "choices": [end]})
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        events.append({**base, "choices": [], "usage": completion["usage"]})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m skillmix.testing.fake_openai",
        description="A fake OpenAI-compatible server: prints 'BASE_URL <url>' first, a JSON summary on exit.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds waited before each answer")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC", help="e.g. 429:every=3")
    parser.add_argument("--model", default="fake-teacher")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the SkillMixResponder")
    parser.add_argument("--accept-rate", type=float, default=0.7)
    parser.add_argument("--log", default=None, metavar="FILE", help="append one JSON line per request")
    args = parser.parse_args(argv)
    try:
        faults = [parse_fault(spec) for spec in args.fault]
        responder = SkillMixResponder(seed=args.seed, accept_rate=args.accept_rate)
    except ValueError as exc:
        parser.error(str(exc))
    server = FakeOpenAIServer(
        responder,
        latency=args.latency,
        faults=faults,
        model=args.model,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        log_path=args.log,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"BASE_URL {server.base_url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
        print(json.dumps(server.summary(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
