"""What every part of the fake server shares about a request: the endpoint paths, the request key, the
text of chat messages, word counts (the fake token counts) and a deterministic hash in [0, 1).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = ["CHAT_PATH", "MODELS_PATH", "content_key", "last_user_message", "request_key"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"

_WORD_RE = re.compile(r"\S+")


def request_key(body: Any, method: str = "POST", path: str = CHAT_PATH) -> str:
    """SHA-256 of the canonical JSON of ``body`` (method and path hashed in for other paths than chat)."""
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    prefix = "" if (method, path) == ("POST", CHAT_PATH) else f"{method} {path}\n"
    return hashlib.sha256((prefix + canonical).encode("utf-8")).hexdigest()


def content_key(body: dict[str, Any]) -> str:
    """SHA-256 of what decides a reply: each message's role and text (string content or its text parts
    alike) and the request's ``seed``; nothing a particular client adds (token limits' names, streaming
    options, metadata)."""
    turns = [[m.get("role"), _message_text(m)] for m in _messages(body)]
    canonical = json.dumps([turns, body.get("seed")], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


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
