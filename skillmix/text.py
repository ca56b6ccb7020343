"""Checks on a generated text: the answer it gives, how many sentences it has, which skills it names.

* :func:`extract_answer` takes the part of a reply after the last ``Answer:`` and before ``Explanation``.
* :func:`count_sentences` is the protocol's counter: a sentence ends at ``.``, ``!`` or ``?``, optionally
  followed by closing quotes, then white space, optional opening quotes and a capital letter; the titles
  Mr. Mrs. Ms. Dr. Prof. do not end a sentence.
* :func:`named_skills` finds skills whose name (lower-cased, the part before any ``(``) is written in the
  text, the check behind the harder "no explicit names" variant of the grade.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from skillmix.skills import skill_name

# "Answer:" in its common dressings (**Answer:**, Answer :, ANSWER:, ### Answer:), not "the answer: ..."
_ANSWER = re.compile(r"\b(?:Answer|ANSWER)\s*[*_]*\s*:")
# "Explanation" as a heading: followed by ':' or '-', or alone at the start of a line
_EXPLANATION = re.compile(
    r"[#*_\s]*\b(?:explanation\s*[*_]*\s*[:\-\u2013\u2014]|(?<![^\n])[#*_ ]*explanation\b)", re.IGNORECASE
)
_TITLES = re.compile(r"\b(Mr|Mrs|Ms|Dr|Prof)\.")
# quotes, straight or curly, either side of the white space after a sentence end (the original allows straight
# ones on both sides: `[.!?]['"]* ['"]*[A-Z]`); the opening ones stay with the sentence they open
_QUOTES = "\"'\u201c\u201d\u2018\u2019"
_SENTENCE_END = re.compile(rf"[.!?][{_QUOTES}]*\s+(?=[{_QUOTES}]*[A-Z])")

_NUMBER_WORDS = (
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
)


def extract_answer(reply: str | None) -> str | None:
    """The text after the last ``Answer:`` and before a following ``Explanation``; None if there is none.

    Surrounding markdown emphasis and white space are removed; quotes are kept (they may be the text's own).
    """
    if not reply:
        return None
    starts = list(_ANSWER.finditer(reply))
    if not starts:
        return None
    rest = reply[starts[-1].end() :]
    end = _EXPLANATION.search(rest)
    if end is not None:
        rest = rest[: end.start()]
    answer = rest.strip().strip("*_").strip()
    return answer or None


def count_sentences(text: str | None) -> int:
    """Number of sentences by the protocol's rule.

    As in the original code (LeoYu/skill-mix): the titles Mr. Mrs. Ms. Dr. Prof. are protected, then a break
    is one of ``.!?``, optional quotes, white space, optional quotes and a capital letter, so both
    ``He said "Stop." Then`` and ``The hive hummed. "Stay calm," she said.`` are two sentences. Deliberate
    deviations, each kept by a test:

    * curly quotes (``\u201c \u201d \u2018 \u2019``) count as straight ones do, on either side of the space;
    * any run of white space (newlines, tabs, several spaces) separates, not exactly one space;
    * an empty or blank text has 0 sentences (the original's split would count it as 1).
    """
    if not text or not text.strip():
        return 0
    protected = _TITLES.sub(lambda m: m.group(1) + "\x00", text.strip())
    return len(_SENTENCE_END.split(protected))


def number_word(n: int) -> str:
    """'one' ... 'ten' for 1..10, digits beyond (used for "at most two sentences")."""
    return _NUMBER_WORDS[n - 1] if 1 <= n <= len(_NUMBER_WORDS) else str(n)


def max_sentences(k: int) -> int:
    """The length limit of a k-skill text: max(1, k - 1) sentences."""
    return max(1, k - 1)


def skill_key(name: str) -> str:
    """A skill name as it is searched for in text: lower-case, part before '(', hyphens as spaces."""
    base = name.split("(", 1)[0]
    return " ".join(re.sub(r"[-_\u2010-\u2015]", " ", base.lower()).split())


def named_skills(text: str | None, skills: Sequence[Any]) -> list[str]:
    """The names of the skills (names, :class:`~skillmix.skills.Skill` objects or records) that the text
    writes out explicitly."""
    if not text:
        return []
    haystack = " " + " ".join(re.sub(r"[-_\u2010-\u2015]", " ", text.lower()).split()) + " "
    found = []
    for skill in skills:
        name = skill_name(skill)
        key = skill_key(name)
        if key and key in haystack:
            found.append(name)
    return found
