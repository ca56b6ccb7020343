"""The prompts of the protocol, rendered from the Jinja2 templates in ``skillmix/templates/``.

* ``generation_round1``: asks for a minimal natural text on the topic showing all k skills, lists each skill
  with its definition and example, and asks for ``Answer:`` then ``Explanation:``;
* ``generation_round2``: asks, in the same conversation, to improve the answer so it shows every skill and
  stays on topic in at most max(1, k-1) sentences (spelled in words), same format;
* ``grader_table`` / ``grader_json``: the k+3 rubric, answered as a ``Criteria | Points Earned`` table with
  a total row and an explanation, or as a JSON object.

A :class:`PromptSet` can point at another template folder (same file names) to try new wording; every
dataset row records :meth:`PromptSet.hashes` so that a change of wording is visible downstream, including
the wording a base model sees (``completion.jinja2`` and its worked examples ``completion_example_*``).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from jinja2 import meta

from skillmix.grading import rubric_items
from skillmix.text import max_sentences, number_word

TEMPLATES: tuple[str, ...] = ("generation_round1", "generation_round2", "grader_table", "grader_json")
GRADER_FORMATS: tuple[str, ...] = ("table", "json")
# Base models (completion mode): how each kind of reply starts, so that the continuation is in our format.
ANSWER_PREFIXES = {
    "generation": "Answer:",
    "grader_table": "| Criteria | Points Earned |\n|---|---|\n|",
    "grader_json": '{"criteria": [{"criterion": "',
}
# What a base model's requests are rendered from (:meth:`PromptSet.plain`): the frame and one worked example
# per reply kind (the frame includes its example by a computed name, so each example is hashed on its own).
COMPLETION_TEMPLATES: tuple[str, ...] = ("completion", *(f"completion_example_{k}" for k in ANSWER_PREFIXES))
# Every template a run's requests can come from: the keys of :meth:`PromptSet.hashes`.
HASHED: tuple[str, ...] = TEMPLATES + COMPLETION_TEMPLATES


class PromptSet:
    """Renders the four prompts from a template folder (the package's own by default)."""

    def __init__(self, template_dir: str | Path | None = None) -> None:
        self.template_dir = Path(
            template_dir if template_dir is not None else str(resources.files("skillmix") / "templates")
        )
        package = str(resources.files("skillmix") / "templates")  # what a user's folder leaves out
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [jinja2.FileSystemLoader(str(self.template_dir)), jinja2.FileSystemLoader(package)]
            ),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            autoescape=False,
        )

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(f"{name}.jinja2").render(**context).strip()

    def round1(self, skills: Sequence[Any], topic: str) -> str:
        return self.render(
            "generation_round1", skills=list(skills), topic=topic, k_word=number_word(len(skills))
        )

    def round2(self, k: int, topic: str) -> str:
        n = max_sentences(k)
        return self.render("generation_round2", topic=topic, n_sentences=n, n_word=number_word(n))

    def grader(self, answer: str, skills: Sequence[Any], topic: str, fmt: str = "table") -> str:
        if fmt not in GRADER_FORMATS:
            raise ValueError(f"unknown grader format {fmt!r} (choose from {', '.join(GRADER_FORMATS)})")
        return self.render(
            f"grader_{fmt}",
            answer=answer,
            skills=list(skills),
            topic=topic,
            k_word=number_word(len(skills)),
            rubric=rubric_items(skills, topic),
        )

    def conversation(
        self, skills: Sequence[Any], topic: str, reply1: str | None = None, reply2: str | None = None
    ) -> list[dict[str, str]]:
        """The chat messages of the two generation rounds so far (OpenAI message format)."""
        messages = [{"role": "user", "content": self.round1(skills, topic)}]
        if reply1 is not None:
            messages.append({"role": "assistant", "content": reply1})
            messages.append({"role": "user", "content": self.round2(len(skills), topic)})
            if reply2 is not None:
                messages.append({"role": "assistant", "content": reply2})
        return messages

    def plain(self, messages: Sequence[dict[str, str]], kind: str) -> tuple[str, str]:
        """A conversation as one plain-text prompt for a base model, ending with the reply's first words;
        returns the prompt and that prefix (``kind``: a key of :data:`ANSWER_PREFIXES`).

        A base model copies what it sees: the reply format's placeholder lines (``Answer: <the text>``) are
        left out of the instructions (the worked example shows the format with a real text), the example of
        a grade has as many skill rows as the rubric being asked for, and a table grade starts with the
        rubric's first row.
        """
        if kind not in ANSWER_PREFIXES:
            raise ValueError(f"unknown reply kind {kind!r} (choose from {', '.join(ANSWER_PREFIXES)})")
        rubric = _rubric_lines(messages[-1]["content"]) if kind.startswith("grader") and messages else []
        prefix = ANSWER_PREFIXES[kind] + (f" {rubric[0]} |" if kind == "grader_table" and rubric else "")
        turns = [{**m, "content": _without_placeholders(m["content"])} for m in messages]
        k = max(1, sum(line.startswith("Correctly illustrates") for line in rubric)) + 1
        text = self.env.get_template("completion.jinja2").render(
            messages=turns, kind=kind, prefix=prefix, example_skills=EXAMPLE_SKILLS[:k]
        )
        return text.rstrip("\n"), prefix

    def hashes(self) -> dict[str, str]:
        """SHA-256 (first 16 hex digits) of each template of :data:`HASHED` (the chat prompts and the
        completion-mode ones) together with the templates it includes, as rendered: a file the template
        folder leaves out is the package's."""
        return {name: self._hash(f"{name}.jinja2")[:16] for name in HASHED}

    def _hash(self, filename: str, seen: frozenset[str] = frozenset()) -> str:
        source, _, _ = self.env.loader.get_source(self.env, filename)  # type: ignore[union-attr]
        digest = hashlib.sha256(source.encode("utf-8"))
        for included in sorted(meta.find_referenced_templates(self.env.parse(source))):
            if included and included not in seen:
                digest.update(self._hash(included, seen | {filename}).encode())
        return digest.hexdigest()


# The skills of the worked example of a grade (completion mode), as many as the rubric asks for.
EXAMPLE_SKILLS = ("metaphor", "hyperbole", "alliteration", "irony", "simile", "understatement")
_PLACEHOLDER = re.compile(r"^(Answer|Explanation): <[^>]*>\s*$|^Reply in (exactly this|the same) form.*:\s*$")


def _without_placeholders(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not _PLACEHOLDER.match(line.strip())).strip()


def _rubric_lines(prompt: str) -> list[str]:
    """The ``- `` criteria lines of a grader prompt, after its "Award 1 point" line."""
    _, _, after = prompt.partition("Award 1 point")
    return [line[2:].strip() for line in after.split("\n") if line.startswith("- ")]


@functools.cache
def default_prompts() -> PromptSet:
    return PromptSet()


def round1_prompt(skills: Sequence[Any], topic: str) -> str:
    return default_prompts().round1(skills, topic)


def round2_prompt(k: int, topic: str) -> str:
    return default_prompts().round2(k, topic)


def grader_prompt(answer: str, skills: Sequence[Any], topic: str, fmt: str = "table") -> str:
    return default_prompts().grader(answer, skills, topic, fmt)
