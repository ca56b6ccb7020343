"""The fake server's batch API: ``/v1/files`` and ``/v1/batches`` as OpenAI serves them, on loopback.

A batch's input file holds one request a line (``{"custom_id", "method", "url", "body"}``); a batch is
``validating`` when created, ``in_progress`` until ``turnaround`` seconds have passed, then ``completed``:
every line answered by the server's own chat machinery (its responder, faults and billing, as a direct
request would be), into an output file (``{"custom_id", "response": {"status_code", "body"}}``) and an
error file for the lines that failed. What a test can script (:class:`BatchBehaviour`):

* ``turnaround``: seconds from creation to completion (0: done at the first look);
* ``fail``: a function of a line that returns an HTTP status for it (that line goes to the error file with
  that status) or None (answered);
* ``expire``: the first ``expire`` batches expire at their turnaround with only the first half of their
  lines answered (at least one), the rest in the error file with code ``batch_expired``, status ``expired``;
* ``max_requests`` and ``max_bytes``: a larger input file is refused at creation (400), as providers refuse.

``cancel`` moves a batch to ``cancelled`` (the lines not answered yet are not run). ``list`` returns the
batches newest first, with OpenAI's ``limit``/``after`` paging. Every call is in :attr:`BatchAPI.calls`.
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

FILES_PATH = "/v1/files"
BATCHES_PATH = "/v1/batches"


@dataclass
class BatchBehaviour:
    turnaround: float = 0.0
    fail: Callable[[dict[str, Any]], int | None] | None = None
    expire: int = 0
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024


@dataclass
class BatchCall:
    method: str
    path: str
    batch: str | None = None
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

    # ------------------------------------------------------------------ routes

    def handle(
        self, method: str, path: str, headers: Any, raw: bytes, query: dict[str, str]
    ) -> tuple[int, Any]:
        """``(status, JSON body or bytes)`` of one call."""
        parts = path.strip("/").split("/")[1:]  # ["files", id, "content"] or ["batches", id, "cancel"]
        with self._lock:
            if parts[0] == "files":
                out = self._files(method, parts[1:], headers, raw)
            else:
                out = self._batches(method, parts[1:], raw, query)
            batch = out[1].get("id") if isinstance(out[1], dict) and parts[0] == "batches" else None
            self.calls.append(BatchCall(method, path, batch if out[0] == 200 else None))
            return out

    def _files(self, method: str, rest: list[str], headers: Any, raw: bytes) -> tuple[int, Any]:
        if method == "POST" and not rest:
            fields = _multipart(headers.get("Content-Type", ""), raw)
            if "file" not in fields:
                return 400, _error("a file is required", "invalid_request_error")
            file_id = f"file-{uuid.uuid4().hex[:24]}"
            name, data = fields["file"]
            purpose = fields.get("purpose", ("", b""))[1].decode() or "batch"
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
        return 404, _error(f"No such File object: {'/'.join(rest)}", "invalid_request_error")

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
        if method == "GET" and not rest:
            return 200, self._list(query)
        if not rest or rest[0] not in self.batches:
            return 404, _error(f"No batch found with id '{'/'.join(rest)}'.", "invalid_request_error")
        batch = self.batches[rest[0]]
        if method == "GET" and len(rest) == 1:
            return 200, self._advance(batch)
        if method == "POST" and rest[1:] == ["cancel"]:
            self._advance(batch)
            if batch["status"] in ("validating", "in_progress"):
                batch.update(status="cancelled", cancelled_at=int(time.time()))
            return 200, batch
        return 404, _error("Unknown request URL", "invalid_request_error")

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            return 400, _error(f"input_file_id {file_id!r} does not exist", "invalid_request_error")
        data = self.files[file_id]["bytes"]
        lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
        b = self.behaviour
        if len(lines) > b.max_requests or len(data) > b.max_bytes:
            return 400, _error(
                f"the batch has {len(lines)} requests and {len(data)} bytes: more than "
                f"{b.max_requests} requests or {b.max_bytes} bytes",
                "invalid_request_error",
            )
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        now = time.time()
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body.get("endpoint"),
            "errors": None,
            "input_file_id": file_id,
            "completion_window": body.get("completion_window", "24h"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(now),
            "in_progress_at": None,
            "expires_at": int(now) + 86400,
            "completed_at": None,
            "expired_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or None,
            "_created": now,
        }
        return 200, self._public(self.batches[batch_id])

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        ordered = sorted(self.batches.values(), key=lambda b: -b["_created"])
        if query.get("after"):
            ids = [b["id"] for b in ordered]
            ordered = ordered[ids.index(query["after"]) + 1 :] if query["after"] in ids else []
        limit = int(query.get("limit") or 20)
        page = [self._public(self._advance(b)) for b in ordered[:limit]]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(ordered) > limit,
        }

    def _advance(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch as time has moved it on (module docstring)."""
        if batch["status"] == "validating":
            batch.update(status="in_progress", in_progress_at=int(time.time()))
        if batch["status"] == "in_progress" and time.time() >= batch["_created"] + self.behaviour.turnaround:
            self._finish(batch)
        return self._public(batch)

    def _finish(self, batch: dict[str, Any]) -> None:
        lines = [
            json.loads(line)
            for line in self.files[batch["input_file_id"]]["bytes"].decode().splitlines()
            if line.strip()
        ]
        out, errors = [], []
        expiring = sum(b["status"] == "expired" for b in self.batches.values()) < self.behaviour.expire
        for index, line in enumerate(lines):
            custom_id = line.get("custom_id")
            if expiring and index >= max(1, len(lines) // 2):
                errors.append(
                    {
                        "id": f"batch_req_{uuid.uuid4().hex[:16]}",
                        "custom_id": custom_id,
                        "response": None,
                        "error": {
                            "code": "batch_expired",
                            "message": "This request could not be executed "
                            "before the completion window expired.",
                        },
                    }
                )
                continue
            status = self.behaviour.fail(line) if self.behaviour.fail else None
            if status is None:
                status, body = self.answer(line.get("body") or {})
            else:
                body = _error(f"scripted failure {status}", "server_error")
            record = {
                "id": f"batch_req_{uuid.uuid4().hex[:16]}",
                "custom_id": custom_id,
                "response": {
                    "status_code": status,
                    "request_id": f"req_{uuid.uuid4().hex[:16]}",
                    "body": body,
                },
                "error": None,
            }
            (out if status == 200 else errors).append(record)
        batch["output_file_id"] = self._store(out, batch["id"], "output") if out else None
        batch["error_file_id"] = self._store(errors, batch["id"], "error") if errors else None
        batch["request_counts"] = {"total": len(lines), "completed": len(out), "failed": len(errors)}
        now = int(time.time())
        if expiring:
            batch.update(status="expired", expired_at=now)
        else:
            batch.update(status="completed", completed_at=now)

    def _store(self, records: list[dict[str, Any]], batch_id: str, kind: str) -> str:
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        data = "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")
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


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


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
