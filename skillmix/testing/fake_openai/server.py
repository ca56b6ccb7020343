"""The server: :class:`FakeOpenAIServer` (life cycle, accounting, request handling, replies as
``chat.completion`` JSON or a ``text/event-stream``) and :class:`RequestRecord`, one request as it saw it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from skillmix.testing.fake_openai.batches import BatchAPI, BatchBehaviour
from skillmix.testing.fake_openai.completions import COMPLETIONS_PATH, as_chat, text_completion
from skillmix.testing.fake_openai.faults import Fault, _error_body
from skillmix.testing.fake_openai.handler import _Handler, _HTTPServer
from skillmix.testing.fake_openai.responders import Reply, Responder, SkillMixResponder, _as_reply
from skillmix.testing.fake_openai.wire import (
    _WORD_RE,
    CHAT_PATH,
    MODELS_PATH,
    _message_text,
    _messages,
    _sse,
    _words,
    last_user_message,
    request_key,
)

__all__ = ["FakeOpenAIServer", "RequestRecord"]


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
        batches: BatchBehaviour | None = BatchBehaviour(),  # noqa: B008 - a frozen default; None: no batch API
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
        self._billed: list[tuple[str, int, int]] = []
        self._seen: Counter[str] = Counter()
        self._ordinals: list[dict[str, int]] = [{} for _ in self.faults]
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log: TextIO | None = None
        self.batch_api = BatchAPI(self, batches) if batches is not None else None  # /v1/files, /v1/batches

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

    def usage_totals(self) -> dict[str, dict[str, int]]:
        """Tokens of every completion the server answered, by model: what a provider would bill."""
        with self._lock:
            billed = list(self._billed)
        totals: dict[str, dict[str, int]] = {}
        for model, prompt, completion in billed:
            entry = totals.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0})
            entry["prompt_tokens"] += prompt
            entry["completion_tokens"] += completion
            entry["requests"] += 1
        return totals

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
            self._billed.clear()
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
        text = (method, path) == ("POST", COMPLETIONS_PATH) and parse_error is None
        request, body = body, as_chat(body) if text else body  # one responder for both endpoints
        is_chat = (method, path) == ("POST", CHAT_PATH) or text
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
        elif self.batch_api is not None and BatchAPI.serves(path):
            query = dict(parse_qsl(urlsplit(handler.path).query))
            status, payload = self.batch_api.handle(method, path, handler.headers, raw, query)
            data = payload if isinstance(payload, bytes) else json.dumps(payload)
            reply = Reply(status=status, raw_body=data if isinstance(data, str) else data.decode("utf-8"))
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
        record = RequestRecord(request, key, attempt, reply.status, arrived, path, method, hung, fault_index)
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
        self._send(handler, reply, body if is_chat else None, key, attempt, request if text else None)

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
        self,
        handler: _Handler,
        reply: Reply,
        body: dict[str, Any] | None,
        key: str,
        attempt: int,
        text: dict[str, Any] | None = None,
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
            usage = completion["usage"]
            with self._lock:  # billed once computed, as a provider does, whether or not the client reads it
                self._billed.append((completion["model"], usage["prompt_tokens"], usage["completion_tokens"]))
            if text is not None:  # /v1/completions: the continuation of its prompt
                payload = json.dumps(text_completion(completion, text)).encode("utf-8")
            elif body.get("stream"):
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
