"""What a chat completion answers: :class:`Reply`, the ``Responder`` type, :class:`ScriptedResponder` (a list
of replies replayed) and :class:`SkillMixResponder` (a deterministic scripted "model" for the skillmix
prompts), with the texts and the topic / skill / rubric finding it uses.
"""

from __future__ import annotations

import json
import random
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from skillmix.testing.fake_openai.wire import _message_text, _messages, _unit, content_key, last_user_message

__all__ = ["Reply", "Responder", "ScriptedResponder", "SkillMixResponder"]


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


Responder = Callable[[dict[str, Any]], "Reply | str"]


def _as_reply(value: Reply | str | None) -> Reply:
    if isinstance(value, Reply):
        return value
    if value is None or isinstance(value, str):
        return Reply(content=value)
    raise TypeError(f"a responder must return a Reply or a str, not {type(value).__name__}")


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
      different, one-sentence answer. The choice is a hash of the request's messages (role and text) and
      its ``seed`` (:func:`~skillmix.testing.fake_openai.wire.content_key`), with the responder's own
      ``seed``: two clients that send the same conversation with the same seed get the same reply, whatever
      else their bodies carry (``max_tokens`` or ``max_completion_tokens``, ``stream_options``, a user
      field), as a model sampling with that seed would (the OpenAI reference: "repeated requests with the
      same ``seed`` and parameters should return the same result").
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
        answered = any(
            m.get("role") == "assistant" and _message_text(m).startswith("Answer:") for m in _messages(body)
        )
        if ("Answer:" in prompt and "Explanation:" in prompt) or answered:  # asked for, or shown, the form
            return self.generate(body, prompt)
        return _GENERIC[int(_unit(f"generic\0{self.seed}\0{content_key(body)}") * len(_GENERIC))]

    # -- generation ------------------------------------------------------------------------------------

    def generate(self, body: dict[str, Any], prompt: str) -> str:
        messages = _messages(body)
        user_texts = [_message_text(m) for m in messages if m.get("role") == "user"]
        topic = _find_topic([prompt, *user_texts])
        skills = _find_skills(user_texts)
        rng = random.Random(f"generate\0{self.seed}\0{content_key(body)}")
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
