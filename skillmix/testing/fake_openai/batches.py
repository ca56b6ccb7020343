"""The fake server's batch API: ``/v1/files`` and ``/v1/batches`` as OpenAI's reference describes them, on
loopback, at least as strict as the real thing (its rules, with the reference they come from, are in
:mod:`~skillmix.testing.fake_openai.batch_rules`).

**The life cycle** (``openai.types.Batch.status``, https://platform.openai.com/docs/api-reference/batch/object),
moved on each time a client looks at a batch (retrieve, list, cancel):

* ``validating`` when created; at the first look the input file's lines are checked (unique ``custom_id``,
  ``POST``, the batch's url, one model per file) and the batch goes ``failed`` with ``errors``
  (``{"object": "list", "data": [BatchError ...]}``, each with its ``line``) or ``in_progress``;
* ``in_progress`` until ``turnaround`` seconds have passed since creation, then ``finalizing`` (every line
  answered by the server's own chat machinery: its responder, faults and billing, as a direct request);
* ``completed`` at the next look, with an output file (``{"id", "custom_id", "response": {"status_code",
  "request_id", "body"}, "error": null}`` a line, written as UTF-8, so U+2028 in a reply stays raw) and an
  error file for the lines that failed;
* ``expired`` for the first ``expire`` batches: only the first half of their lines answered, the rest in
  the error file with code ``batch_expired`` (as the Batch guide says of an expired batch);
* ``cancelling`` when cancelled (``batches.cancel``: "the batch will be in status ``cancelling`` for up to
  10 minutes, before changing to ``cancelled``, where it will have partial results (if any) available in the
  output file"): ``cancel_done`` of its lines are answered, the rest are in no file; ``cancelled`` at the
  first look ``cancel_seconds`` later. A batch that is not ``validating``, ``in_progress`` or
  ``finalizing`` cannot be cancelled (400).

**Scripted faults** (:class:`BatchBehaviour`): ``fail`` (a line's HTTP status in the error file),
``expire``, ``refuse`` (the n-th batch created fails validation with the given ``BatchError`` list: an
account's limit such as :func:`enqueued_token_limit`, or errors naming lines), ``max_requests`` and
``max_bytes`` (the limits of one file, refused at upload or create with a 400). **Provider profiles**:
``listing=False`` answers ``GET /v1/batches`` with 405 (a server that creates batches but lists none),
``metadata=False`` drops a batch's metadata (a server that keeps none), ``absent=501`` (or 404) answers
every batch route with that status; ``FakeOpenAIServer(batches=None)`` serves no batch API (404).
:meth:`BatchAPI.forget` makes the provider forget a batch (404 on retrieving it). Every call is in
:attr:`BatchAPI.calls`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skillmix.testing.fake_openai import batch_rules as rules

FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"
CANCELLABLE = ("validating", "in_progress", "finalizing")


def enqueued_token_limit(model: str = "fake-teacher") -> list[dict[str, Any]]:
    """The ``errors.data`` of a batch refused for the account's enqueued tokens, in the words OpenAI uses
    (reported in openai/openai-python#2084: ``BatchError(code='token_limit_exceeded', line=None, ...)``)."""
    message = (
        f"Enqueued token limit reached for {model} in organization org-fake. Limit: 2,000,000 enqueued "
        "tokens. Please try again once some in_progress batches have been completed."
    )
    return [{"code": "token_limit_exceeded", "line": None, "message": message, "param": None}]


@dataclass
class BatchBehaviour:
    turnaround: float = 0.0
    fail: Callable[[dict[str, Any]], int | None] | None = None
    expire: int = 0
    refuse: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]] | None] | None = None
    cancel_done: float = 0.5  # the share of a batch's lines answered by the time a cancel lands
    cancel_seconds: float = 0.0  # ``cancelling`` lasts at least one look, then this long
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    listing: bool = True
    metadata: bool = True
    absent: int | None = None


@dataclass
class BatchCall:
    method: str
    path: str
    batch: str | None = None
    status: int = 200
    at: float = field(default_factory=time.time)


class BatchAPI:
    """The state and the routes of the batch API (the server calls :meth:`handle` for its paths)."""

    def __init__(self, server: Any, behaviour: BatchBehaviour | None = None) -> None:
        self.server = server
        self.behaviour = behaviour or BatchBehaviour()
        self.billed: list[tuple[str, int, int]] = []  # (model, prompt tokens, completion tokens) of each line
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.calls: list[BatchCall] = []
        self._lock = threading.Lock()

    @staticmethod
    def serves(path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in (FILES_PATH, BATCHES_PATH))

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One line, answered as the server answers a direct request (its responder), and billed."""
        from skillmix.testing.fake_openai.faults import _error_body
        from skillmix.testing.fake_openai.wire import CHAT_PATH, request_key

        reply = self.server._respond(body)
        if reply.status != 200:
            return reply.status, _error_body(reply.status, reply.content)
        completion = self.server._completion(body, reply, request_key(body, "POST", CHAT_PATH), 0)
        usage = completion["usage"]
        self.billed.append((completion["model"], usage["prompt_tokens"], usage["completion_tokens"]))
        return 200, completion

    def usage_totals(self) -> dict[str, dict[str, int]]:
        """Tokens of every batch line answered, by model: what a provider would bill at its batch price."""
        totals: dict[str, dict[str, int]] = {}
        for model, prompt, completion in list(self.billed):
            entry = totals.setdefault(model, {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0})
            entry["prompt_tokens"] += prompt
            entry["completion_tokens"] += completion
            entry["requests"] += 1
        return totals

    def created(self) -> list[str]:
        """The ids of the batches created, in order."""
        return [
            call.batch
            for call in self.calls
            if call.method == "POST" and call.path == BATCHES_PATH and call.batch
        ]

    def forget(self, batch_id: str) -> None:
        """The provider forgets a batch: retrieving it is a 404 from now on."""
        with self._lock:
            self.batches.pop(batch_id, None)

    # ------------------------------------------------------------------ routes

    def handle(
        self, method: str, path: str, headers: Any, raw: bytes, query: dict[str, str]
    ) -> tuple[int, Any]:
        """``(status, JSON body or bytes)`` of one call."""
        parts = path.strip("/").split("/")[1:]  # ["files", id, "content"] or ["batches", id, "cancel"]
        with self._lock:
            if self.behaviour.absent is not None:
                out: tuple[int, Any] = (self.behaviour.absent, rules.error(f"Unknown request URL: {path}"))
            elif parts[0] == "files":
                out = self._files(method, parts[1:], headers, raw)
            else:
                out = self._batches(method, parts[1:], raw, query)
            batch = out[1].get("id") if isinstance(out[1], dict) and parts[0] == "batches" else None
            self.calls.append(BatchCall(method, path, batch if out[0] == 200 else None, out[0]))
            return out

    def _files(self, method: str, rest: list[str], headers: Any, raw: bytes) -> tuple[int, Any]:
        if method == "POST" and not rest:
            fields = _multipart(headers.get("Content-Type", ""), raw)
            if "file" not in fields or "purpose" not in fields:
                return 400, rules.error("'file' and 'purpose' are required", param="file")
            name, data = fields["file"]
            purpose = fields["purpose"][1].decode()
            problem = rules.upload_problem(purpose, name, len(data), self.behaviour.max_bytes)
            if problem:
                return 400, rules.error(problem, param="purpose")
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            self.files[file_id] = {
                "bytes": data,
                "purpose": purpose,
                "filename": name,
                "created": int(time.time()),
            }
            return 200, self._file_object(file_id)
        if method == "GET" and len(rest) >= 1 and rest[0] in self.files:
            if rest[1:] == ["content"]:
                return 200, self.files[rest[0]]["bytes"]
            return 200, self._file_object(rest[0])
        return 404, rules.error(f"No such File object: {'/'.join(rest)}")

    def _file_object(self, file_id: str) -> dict[str, Any]:
        f = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["bytes"]),
            "created_at": f["created"],
            "filename": f["filename"],
            "purpose": f["purpose"],
            "status": "processed",
        }

    def _batches(self, method: str, rest: list[str], raw: bytes, query: dict[str, str]) -> tuple[int, Any]:
        if method == "POST" and not rest:
            return self._create(json.loads(raw or b"{}"))
        if not rest:
            if method != "GET" or not self.behaviour.listing:
                return 405, rules.error(f"Method {method} is not allowed on {BATCHES_PATH}")
            return self._list(query)
        if rest[0] not in self.batches:
            return 404, rules.error(f"No batch found with id '{'/'.join(rest)}'.")
        batch = self.batches[rest[0]]
        if method == "GET" and len(rest) == 1:
            return 200, self._advance(batch)
        if method == "POST" and rest[1:] == ["cancel"]:
            return self._cancel(batch)
        return 404, rules.error("Unknown request URL")

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        file = self.files.get(body.get("input_file_id"))  # type: ignore[arg-type]
        problem = rules.create_problem(body, file)
        if problem:
            return 400, rules.error(problem[0], param=problem[1])
        assert file is not None
        data = file["bytes"]
        count = len(rules.split_lines(data))
        b = self.behaviour
        if count > b.max_requests or len(data) > b.max_bytes:
            message = (f"the batch has {count} requests and {len(data)} bytes: more than {b.max_requests} "
                       f"requests or {b.max_bytes} bytes")  # fmt: skip
            return 400, rules.error(message, param="input_file_id")
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        now = time.time()
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "model": None,
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(now),
            **dict.fromkeys(("in_progress_at", "finalizing_at", "completed_at", "failed_at"), None),
            **dict.fromkeys(("expired_at", "cancelling_at", "cancelled_at"), None),
            "expires_at": int(now) + 86400,
            "request_counts": {"total": count, "completed": 0, "failed": 0},
            "metadata": (body.get("metadata") or None) if b.metadata else None,
            "_created": now,
            "_ordinal": len(self.created()),
        }
        return 200, self._public(self.batches[batch_id])

    def _list(self, query: dict[str, str]) -> tuple[int, Any]:
        limit = rules.list_limit(query)
        if isinstance(limit, str):
            return 400, rules.error(limit, param="limit")
        ordered = sorted(self.batches.values(), key=lambda b: (-b["_created"], b["id"]))
        if query.get("after"):
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
        page = [self._advance(b) for b in ordered[:limit]]
        return 200, {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > limit,
        }

    def _cancel(self, batch: dict[str, Any]) -> tuple[int, Any]:
        self._advance(batch)
        if batch["status"] not in CANCELLABLE:
            return 400, rules.error(f"Cannot cancel a batch with status {batch['status']!r}.")
        if batch["status"] != "validating":
            lines = self._requests(batch)
            done = int(len(lines) * self.behaviour.cancel_done)
            batch["_results"] = batch.get("_results") or self._run(lines[:done], expiring=False)
        batch.update(status="cancelling", cancelling_at=int(time.time()), _cancelling=time.time())
        return 200, self._public(batch)

    # ------------------------------------------------------------------ the life cycle

    def _advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch as time has moved it on (module docstring)."""
        now = time.time()
        status = batch["status"]
        if status == "validating":
            self._validate(batch)
        elif status == "in_progress" and now >= batch["_created"] + self.behaviour.turnaround:
            expiring = sum(b["status"] == "expired" for b in self.batches.values()) < self.behaviour.expire
            lines = self._requests(batch)
            batch["_results"] = self._run(lines, expiring)
            batch.update(status="finalizing", finalizing_at=int(now), _expiring=expiring)
        elif status == "finalizing":
            self._write(batch, batch.pop("_results"))
            if batch.pop("_expiring"):
                batch.update(status="expired", expired_at=int(now))
            else:
                batch.update(status="completed", completed_at=int(now))
        elif status == "cancelling" and now >= batch["_cancelling"] + self.behaviour.cancel_seconds:
            self._write(batch, batch.pop("_results", None) or ([], []))
            batch.update(status="cancelled", cancelled_at=int(now))
        return self._public(batch)

    def _validate(self, batch: dict[str, Any]) -> None:
        data = self.files[batch["input_file_id"]]["bytes"]
        requests, errors = rules.line_errors(data, batch["endpoint"])
        if not errors and self.behaviour.refuse is not None:
            errors = self.behaviour.refuse(batch["_ordinal"], requests) or []
        now = int(time.time())
        if errors:
            batch.update(status="failed", failed_at=now, errors={"object": "list", "data": errors})
            return
        batch.update(
            status="in_progress", in_progress_at=now, model=requests[0]["body"]["model"] if requests else None
        )

    def _requests(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in rules.split_lines(self.files[batch["input_file_id"]]["bytes"])]

    def _run(self, lines: list[dict[str, Any]], expiring: bool) -> tuple[list[dict], list[dict]]:
        """Answer ``lines`` (the second half not run when ``expiring``): the output and error records."""
        out, errors = [], []
        for index, line in enumerate(lines):
            custom_id = line.get("custom_id")
            record_id = f"batch_req_{uuid.uuid4().hex[:16]}"
            if expiring and index >= max(1, len(lines) // 2):
                message = "This request could not be executed before the completion window expired."
                errors.append({"id": record_id, "custom_id": custom_id, "response": None,
                               "error": {"code": "batch_expired", "message": message}})  # fmt: skip
                continue
            status = self.behaviour.fail(line) if self.behaviour.fail else None
            if status is None:
                status, body = self.answer(line.get("body") or {})
            else:
                body = rules.error(f"scripted failure {status}", "server_error")
            response = {"status_code": status, "request_id": f"req_{uuid.uuid4().hex[:16]}", "body": body}
            record = {"id": record_id, "custom_id": custom_id, "response": response, "error": None}
            (out if status == 200 else errors).append(record)
        return out, errors

    def _write(self, batch: dict[str, Any], results: tuple[list[dict], list[dict]]) -> None:
        out, errors = results
        batch["output_file_id"] = self._store(out, batch["id"], "output") if out else None
        batch["error_file_id"] = self._store(errors, batch["id"], "error") if errors else None
        total = batch["request_counts"]["total"]
        batch["request_counts"] = {"total": total, "completed": len(out), "failed": len(errors)}

    def _store(self, records: list[dict[str, Any]], batch_id: str, kind: str) -> str:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
        self.files[file_id] = {
            "bytes": data,
            "purpose": f"batch_{kind}",
            "filename": f"{batch_id}_{kind}.jsonl",
            "created": int(time.time()),
        }
        return file_id

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in batch.items() if not key.startswith("_")}


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str, bytes]]:
    """``{field: (filename, bytes)}`` of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + raw
    )
    out = {}
    for part in message.iter_parts() if message.is_multipart() else []:
        name = part.get_param("name", header="content-disposition")
        if name:
            out[str(name)] = (str(part.get_filename() or ""), part.get_payload(decode=True) or b"")
    return out
