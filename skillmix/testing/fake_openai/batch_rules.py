"""What the fake batch API refuses, rule by rule, as OpenAI's reference states it.

The reference, read for these rules (openai-python 2.x, generated from OpenAI's OpenAPI specification):

* ``openai.types.FilePurpose`` and ``files.create``: a file's ``purpose`` is one of ``assistants``,
  ``batch``, ``fine-tune``, ``vision``, ``user_data``, ``evals``; a batch's input file is uploaded with
  ``purpose="batch"`` as a ``.jsonl`` file;
* ``batches.create`` (``BatchCreateParams``, https://platform.openai.com/docs/api-reference/batch/create):
  ``completion_window`` is ``"24h"`` (the only one); ``endpoint`` is one of ``/v1/responses``,
  ``/v1/chat/completions``, ``/v1/embeddings``, ``/v1/completions``, ``/v1/moderations``, ...; the input
  file "can contain up to 50,000 requests, and can be up to 200 MB in size"; ``metadata`` is "a set of
  16 key-value pairs ... keys are strings with a maximum length of 64 characters, values are strings with
  a maximum length of 512 characters";
* the request input object (https://platform.openai.com/docs/api-reference/batch/request-input): one JSON
  object a line with ``custom_id`` (unique within the file), ``method`` (``POST``), ``url`` (the batch's
  endpoint) and ``body``; the Batch guide adds that one file holds the requests of one model;
* ``batches.list`` (``BatchListParams``): ``limit`` "can range between 1 and 100, and the default is 20",
  ``after`` is the cursor, and the page says ``has_more``;
* ``BatchError`` (``code``, ``line``, ``message``, ``param``): a batch whose input fails validation ends
  ``failed`` with ``errors.data`` naming each bad line (``line``: its 1-based number in the file).

The codes of the line errors are the fake's own names for each rule (the reference documents the
``BatchError`` fields, not a list of codes).
"""

from __future__ import annotations

import json
from typing import Any

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
)
SERVED = ("/v1/chat/completions",)  # what the fake's own machinery answers
WINDOWS = ("24h",)
METADATA_KEYS, METADATA_KEY_CHARS, METADATA_VALUE_CHARS = 16, 64, 512
LIST_LIMIT = (1, 100)
LIST_DEFAULT = 20


def error(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error body."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def upload_problem(purpose: str, filename: str, size: int, max_bytes: int) -> str | None:
    """Why ``files.create`` refuses an upload (None: it does not)."""
    if purpose not in PURPOSES:
        return f"'{purpose}' is not one of {list(PURPOSES)} - 'purpose'"
    if purpose == "batch" and not filename.endswith(".jsonl"):
        return f"Invalid file format for Batch API. Must be .jsonl, got {filename!r}"
    if purpose == "batch" and size > max_bytes:
        return f"The file is {size} bytes: a batch input file is at most {max_bytes} bytes"
    return None


def create_problem(body: dict[str, Any], file: dict[str, Any] | None) -> tuple[str, str] | None:
    """Why ``batches.create`` refuses ``body`` (``(message, param)``; None: it does not)."""
    if file is None:
        return f"No such File object: {body.get('input_file_id')!r}", "input_file_id"
    if file["purpose"] != "batch":
        return (
            f"The input file must be uploaded with purpose 'batch', not {file['purpose']!r}",
            "input_file_id",
        )
    if body.get("endpoint") not in ENDPOINTS:
        return f"{body.get('endpoint')!r} is not one of {list(ENDPOINTS)} - 'endpoint'", "endpoint"
    if body.get("endpoint") not in SERVED:
        return f"the fake serves batches of {list(SERVED)} only, not {body.get('endpoint')!r}", "endpoint"
    if body.get("completion_window") not in WINDOWS:
        return f"{body.get('completion_window')!r} is not one of {list(WINDOWS)}", "completion_window"
    return metadata_problem(body.get("metadata"))


def metadata_problem(metadata: Any) -> tuple[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > METADATA_KEYS:
        return f"metadata: at most {METADATA_KEYS} key-value pairs", "metadata"
    for key, value in metadata.items():
        if len(key) > METADATA_KEY_CHARS:
            return f"metadata key {key[:20]!r}...: at most {METADATA_KEY_CHARS} characters", "metadata"
        if not isinstance(value, str) or len(value) > METADATA_VALUE_CHARS:
            return f"metadata[{key!r}]: a string of at most {METADATA_VALUE_CHARS} characters", "metadata"
    return None


def list_limit(query: dict[str, str]) -> int | str:
    """The list's ``limit`` (the reference's default 20), or why it is refused."""
    raw = query.get("limit")
    if raw is None:
        return LIST_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        return f"limit: {raw!r} is not an integer"
    low, high = LIST_LIMIT
    return limit if low <= limit <= high else f"limit: {limit} is not between {low} and {high}"


def split_lines(data: bytes) -> list[bytes]:
    """The lines of a JSONL file: split on ``\\n`` only (JSON text may hold U+2028 and the like)."""
    return [line for line in data.split(b"\n") if line.strip()]


def line_errors(data: bytes, endpoint: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The requests of an input file and the ``BatchError`` of every line that breaks a rule."""
    requests, errors, seen, models = [], [], set(), set()
    for number, raw in enumerate(split_lines(data), start=1):
        problem = None
        try:
            line = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            line, problem = None, ("invalid_json_line", "This line is not parseable as valid JSON.", None)
        if problem is None and not isinstance(line, dict):
            problem = ("invalid_json_line", "This line is not a JSON object.", None)
        if problem is None:
            problem = _line_problem(line, endpoint, seen, models)
        if problem is None:
            requests.append(line)
            continue
        code, message, param = problem
        errors.append({"code": code, "line": number, "message": message, "param": param})
    return requests, errors


def _line_problem(line: dict[str, Any], endpoint: str, seen: set[str], models: set[str]) -> Any:
    custom_id = line.get("custom_id")
    body = line.get("body")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "custom_id is required.", "custom_id"
    if custom_id in seen:
        return "duplicate_custom_id", "The custom_id of this request is a duplicate of another.", "custom_id"
    seen.add(custom_id)
    if line.get("method") != "POST":
        return "invalid_method", f"method must be POST, not {line.get('method')!r}.", "method"
    if line.get("url") != endpoint:
        return "invalid_url", f"url {line.get('url')!r} is not the batch's endpoint {endpoint}.", "url"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return "missing_required_parameter", "body.model is required.", "body.model"
    models.add(body["model"])
    if len(models) > 1:
        return "mismatched_model", "The requests of one file must all name the same model.", "body.model"
    return None
