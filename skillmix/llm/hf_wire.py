"""What the transformers server (:mod:`skillmix.llm.hf_server`) reads and writes: the fields of an OpenAI
chat completion request, checked one by one, and the OpenAI-shaped bodies of its answers and errors.

Kept apart from the server so that the wire format can be read (and changed) without the batching and the
model around it: a request that this module refuses never reaches the model, and each refusal is a 400 that
names the field (``param``), as OpenAI's own errors do.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

DEFAULT_MAX_TOKENS = 256
MAX_BODY_BYTES = 32 << 20


class ApiError(Exception):
    """A request the server answers with an error body (``status`` 4xx or 5xx)."""

    def __init__(self, message: str, status: int = 400, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.param = message, status, param

    def body(self) -> dict[str, Any]:
        kind = {404: "not_found_error", 500: "server_error"}.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": None}}


def parse_request(raw: bytes) -> dict[str, Any]:
    """The fields of a chat completion request, checked: ``messages``, ``max_tokens``, ``temperature``..."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    if body.get("n") not in (None, 1) or isinstance(body.get("n"), bool):
        raise ApiError("only n=1 is supported", param="n")
    if body.get("stream"):
        raise ApiError("streaming is not supported", param="stream")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    max_tokens = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if not _number(max_tokens, int) or max_tokens < 1:
        raise ApiError("max_tokens must be an integer >= 1", param="max_tokens")
    temperature = 1.0 if body.get("temperature") is None else body["temperature"]
    if not _number(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise ApiError("temperature must be a number from 0 to 2", param="temperature")
    seed = body.get("seed")
    if seed is not None and not _number(seed, int):
        raise ApiError("seed must be an integer", param="seed")
    return {
        "messages": _messages(body.get("messages")),
        "max_tokens": max_tokens,
        "temperature": float(temperature),
        "seed": seed,
        "model": body.get("model"),
    }


def _number(value: Any, kind: type | tuple[type, ...]) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ApiError("messages must be a non-empty list", param="messages")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(f"messages[{i}] must be an object with a string role", param="messages")
        content = message.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content):
                raise ApiError(f"messages[{i}].content: only text parts are supported", param="messages")
            content = "".join(p["text"] for p in content)
        if not isinstance(content, str):
            raise ApiError(f"messages[{i}].content must be a string", param="messages")
        out.append({"role": message["role"], "content": content})
    return out


def model_list(name: str, created: int) -> dict[str, Any]:
    """The body of ``GET /v1/models``: the one model served."""
    card = {"id": name, "object": "model", "created": created, "owned_by": "skillmix"}
    return {"object": "list", "data": [card]}


def completion_body(
    model: str, text: str, finish: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """The body of a chat completion: one choice, its finish reason and the token usage."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
