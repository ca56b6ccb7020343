"""``POST /v1/completions`` of the fake server: a base model's endpoint, for skillmix's completion mode.

A prompt in skillmix's plain-text rendering (turns headed ``### Instruction`` / ``### Response``, see
``skillmix/templates/completion.jinja2``) is read back into chat messages, so that the same responders
answer both endpoints; the reply is then given as a *continuation*: the words the prompt already ends
with (the reply's prefix, such as ``Answer:``) are not repeated, and it stops where ``stop`` says.
"""

from __future__ import annotations

import re
from typing import Any

COMPLETIONS_PATH = "/v1/completions"
_TURN = re.compile(r"^### (Instruction|Response)[ \t]*$", re.M)


def as_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The completions request as a chat request: its prompt's turns as messages (the last, unfinished
    response left out), the other fields as they are."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt.strip():
        return {k: v for k, v in body.items() if k != "prompt"}
    parts = _TURN.split(prompt)
    messages = []
    if parts[0].strip() or len(parts) == 1:
        messages.append({"role": "user", "content": parts[0].strip()})
    for role, text in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": "user" if role == "Instruction" else "assistant", "content": text.strip()})
    if len(messages) > 1 and messages[-1]["role"] == "assistant":
        messages.pop()  # the reply to write: its prefix is the end of the prompt
    return {**{k: v for k, v in body.items() if k != "prompt"}, "messages": messages}


def continuation(prompt: str, reply: str | None, stop: Any) -> tuple[str | None, bool]:
    """``reply`` without the words ``prompt`` ends with, cut at the first ``stop`` string; and whether
    it was cut there."""
    if reply is None:
        return None, False
    for size in range(min(len(prompt), len(reply)), 0, -1):
        if prompt.endswith(reply[:size]):
            reply = reply[size:]
            break
    stops = [stop] if isinstance(stop, str) else [s for s in stop or [] if isinstance(s, str) and s]
    cut = min((reply.find(s) for s in stops if s in reply), default=-1)
    return (reply, False) if cut < 0 else (reply[:cut], True)


def text_completion(chat: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """A ``chat.completion`` answer rewritten as the ``text_completion`` answer to ``body``."""
    prompt = body.get("prompt")
    prompt = prompt[0] if isinstance(prompt, list) and prompt else prompt
    choices = []
    for choice in chat["choices"]:
        text, stopped = continuation(str(prompt or ""), choice["message"]["content"], body.get("stop"))
        finish = "stop" if stopped else choice["finish_reason"]
        choices.append(
            {"index": choice["index"], "text": text or "", "logprobs": None, "finish_reason": finish}
        )
    return {
        **{k: v for k, v in chat.items() if k != "choices"},
        "object": "text_completion",
        "id": chat["id"].replace("chatcmpl-", "cmpl-"),
        "choices": choices,
    }
