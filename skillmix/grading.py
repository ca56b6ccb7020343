"""Parse an LLM grader's verdict on a Skill-Mix text into rubric points.

A Skill-Mix text written for ``k`` skills and one topic is graded on ``k + 3`` points, one each, in the
*rubric order* returned by :func:`rubric_items`:

1. ``Correctly illustrates <skill>`` for each skill, in the order given;
2. ``Pertains to <topic>``;
3. ``Text makes sense``;
4. ``At most <N> sentences`` with ``N = max(1, k - 1)`` spelled in words (:func:`number_word`).

The grader is asked for a markdown table (``Criteria | Points Earned``, one row per item, a
``Total Points Earned`` row, then an ``Explanation:``), or, in the JSON variant of the prompt, for an object
``{"criteria": [{"criterion": ..., "points": 0 or 1}, ...], "total": ..., "explanation": ...}``.
Real graders drift from both, so :func:`parse_grade` tries three readings of the output:

* ``"table"``: any pipe-separated rows (bold, fractions such as ``1/1``, alignment rows, prose or code
  fences around the table, a renamed or absent header and extra columns are all tolerated);
* ``"json"``: the first JSON object in the output that looks like a grade (the ``criteria`` list form or a
  flat ``{"<criterion>": points, "total": n}`` form);
* ``"lines"``: one criterion per line, e.g. ``1. Correctly illustrates metaphor: 1/1``.

Rows are matched to rubric items by meaning, not by position: a row naming a skill is that skill's row
(skill names are tried first, so "modus ponens" is never mistaken for the "makes sense" item), then the
topic, "sense"-like and "sentence"-like keywords decide, whichever appears first in the label. Rows with
generic labels ("Skill 1") fall back to their position when there are exactly ``k + 3`` of them.

The parser never turns a problem into zeros: a missing row, a points value other than 0 or 1, or two rows
that disagree about one item make the result an error (``Grade.points is None``) whose message names the
rubric items concerned. Non-fatal findings (a reported total that does not match the sum, rows matched by
position, ignored rows) go to ``Grade.notes``. :func:`parse_grade` never raises on string input.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from skillmix.skills import skill_name
from skillmix.text import max_sentences, number_word

__all__ = ["Grade", "max_sentences", "number_word", "parse_grade", "rubric_items"]

_MISSING = object()  # "no total row seen" (a JSON total may legitimately be null)

# Keywords that identify the three non-skill items (searched in normalised labels).
_TOPIC_RE = re.compile(r"\btopic|\bpertain|\brelevan|\brelated\b")
_SENSE_RE = re.compile(
    r"\b(?:sense|sensible|logical|logically)\b|\b(?:coheren|meaningful|understandab|grammatical)"
)
_LENGTH_RE = re.compile(r"\bsentences?\b|\blength\b|\bat most\b|\bconcise|\bbrevity\b|\bword count\b")
_SKILLISH_RE = re.compile(r"^(?:correct(?:ly)? )?(?:skill\b|illustrat)")
_TOTAL_RE = re.compile(r"^(?:total|sum)\b|^(?:overall|final) (?:score|points)")
_HEADER_RE = re.compile(r"criteri|\b(?:points?|scores?|earned|rubric|items?|marks?|grade)\b")
_POINTS_HEADER_RE = re.compile(r"\b(?:points?|scores?|earned|marks?|grades?|results?|awarded)\b")
_LABEL_HEADER_RE = re.compile(r"criteri|item|rubric|requirement|aspect|categor|descript")
_ALIGN_CELL_RE = re.compile(r"^:?-+:?$")
_NUMERIC_CELL_RE = re.compile(r"^#?\d*[.)]?$")
_FOLD_RE = re.compile(r"[*`_\-\u2010\u2011\u2012\u2013\u2014]+")
_CHECKS, _CROSSES = "✓✔☑✅", "✗✘✕❌❎"
_SCORE_START_RE = re.compile(r"^[+-]?(?:\d|\.\d)|^[" + _CHECKS + _CROSSES + "]")
_SCORE_RE = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:\s*(?:/|out of)\s*(\d+(?:\.\d+)?))?(.*)", re.S)
_TOTAL_VALUE_RE = re.compile(r"\s*(\d+)(?:\.0+)?(?![\d.]*\d)")
_BULLET_RE = re.compile(r"^\s*(?:[-*+•]|\(?\d{1,2}[.)]|#{1,6})\s+")
_LINE_SEP_RE = re.compile(r":|\s[-–—=]+>?\s|\s?→\s?|\t")
_JSON_LIST_KEYS = ("criteria", "scores", "rubric", "items", "grades", "results", "evaluation")
_JSON_LABEL_KEYS = ("criterion", "criteria", "name", "item", "label", "rubric item", "description")
_JSON_POINT_KEYS = ("points", "points earned", "score", "earned", "point", "value")
_JSON_SKIP_KEYS = frozenset(
    ("explanation", "reasoning", "reason", "comments", "comment", "feedback", "justification", "analysis")
)
_JSON_START_RE = re.compile(r"[{\[]")
_JSON_LIKELY_RE = re.compile(r"[{\[]\s*[\"{]")
_MAX_JSON_STARTS = 64


def _skill_names(skills: Any) -> list[str]:
    if isinstance(skills, str):  # a lone skill name, not a sequence of one-letter skills
        return [skills]
    return [skill_name(s) for s in skills]


def rubric_items(skills: Iterable[Any], topic: str) -> list[str]:
    """The ``k + 3`` rubric labels, in rubric order, for ``skills`` (names or objects with ``.name``)."""
    names = _skill_names(skills)
    n = max_sentences(len(names))
    limit = f"At most {number_word(n)} {'sentence' if n == 1 else 'sentences'}"
    skill_items = [f"Correctly illustrates {name}" for name in names]
    return [*skill_items, f"Pertains to {topic}", "Text makes sense", limit]


@dataclass(frozen=True)
class Grade:
    """The outcome of parsing one grader output.

    ``points`` holds ``k + 3`` ints (0/1) in rubric order, or is None when ``error`` says why the output
    could not be read. ``fmt`` is the format recognised ("table", "json" or "lines"), ``reported_total`` the
    grader's own total if it gave one, ``notes`` non-fatal observations.
    """

    points: list[int] | None
    error: str | None = None
    fmt: str | None = None
    reported_total: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every rubric item was read (``points`` is set and there is no error)."""
        return self.error is None and self.points is not None


def _norm(text: str) -> str:
    """Casefold, drop accents and markdown emphasis, fold hyphens/underscores to spaces, squash spaces."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join(_FOLD_RE.sub(" ", text).split())


def _word_re(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)")


def _short(label: str, limit: int = 60) -> str:
    label = " ".join(label.replace("*", "").split())
    return label if len(label) <= limit else label[: limit - 3] + "..."


def _is_total(label: str) -> bool:
    return bool(_TOTAL_RE.search(_norm(label)))


class _Matcher:
    """Maps free-form row labels to rubric item indices."""

    def __init__(self, skills: Iterable[Any], topic: str) -> None:
        names = _skill_names(skills)
        self.labels = rubric_items(names, topic)
        self.k = len(names)
        self._skills: list[list[re.Pattern[str]]] = []
        for name in names:
            forms = {_norm(name), _norm(name.split("(", 1)[0])} - {""}
            self._skills.append([_word_re(form) for form in sorted(forms, key=len, reverse=True)])
        topic_forms = {_norm(topic), _norm(re.sub(r"(?i)^\s*the\s+", "", topic))} - {""}
        self._topic = [*(_word_re(form) for form in topic_forms), _TOPIC_RE]

    def classify(self, label: str) -> int | None:
        """The rubric index ``label`` refers to, or None if it names nothing (or several skills)."""
        text = _norm(label)
        if not text:
            return None
        hits: list[tuple[int, int, int]] = []  # (start, end, skill index): the longest match of each skill
        for idx, patterns in enumerate(self._skills):
            spans = [m.span() for p in patterns if (m := p.search(text))]
            if spans:
                start, end = max(spans, key=lambda s: s[1] - s[0])
                hits.append((start, end, idx))
        # A skill whose match lies inside a longer skill's match ("bias" in "self serving bias") yields.
        kept = {i for s, e, i in hits if not any(o != i and s2 <= s and e <= e2 for s2, e2, o in hits)}
        if hits:
            return kept.pop() if len(kept) == 1 else None
        if _SKILLISH_RE.match(text):  # "Skill 2", "Illustrates a logical rule": a skill we cannot name
            return None
        best: tuple[int, int] | None = None
        for item, patterns in ((self.k, self._topic), (self.k + 1, [_SENSE_RE]), (self.k + 2, [_LENGTH_RE])):
            for pattern in patterns:
                m = pattern.search(text)
                if m and (best is None or m.start() < best[0]):
                    best = (m.start(), item)
        return best[1] if best else None


def _clean_cell(value: str) -> str:
    text = unicodedata.normalize("NFKC", value).replace("*", "").replace("`", "").replace("_", " ")
    return " ".join(text.split()).casefold()


def _parse_points(value: Any) -> tuple[int | None, str | None]:
    """Read one points value as 0 or 1; returns ``(points, None)`` or ``(None, problem)``."""
    if isinstance(value, bool):
        return int(value), None
    if isinstance(value, (int, float)):
        return (int(value), None) if value in (0, 1) else (None, f"{value!r} is not 0 or 1")
    if value is None:
        return None, "no points given"
    if not isinstance(value, str):
        return None, f"unrecognised points value {_short(repr(value))}"
    text = _clean_cell(value)
    if not text:
        return None, "empty points value"
    if text[0] in _CHECKS or text[0] in _CROSSES:
        return int(text[0] in _CHECKS), None
    m = _SCORE_RE.match(text)
    rest = m.group(3).lstrip() if m else ""
    if m is None or rest[:1].isdigit() or rest[:1] in ("/", "⁄", "."):
        return None, f"unrecognised points value {_short(repr(value))}"
    num, den = float(m.group(1)), float(m.group(2)) if m.group(2) else 1.0
    if den != 1 or num not in (0, 1):
        return None, f"{_short(repr(value))} is not 0 or 1"
    return int(num), None


def _parse_total(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        m = _TOTAL_VALUE_RE.match(_clean_cell(value))
        return int(m.group(1)) if m else None
    return None


def _assemble(
    rows: list[tuple[str, Any]], matcher: _Matcher, fmt: str, total: Any, notes: list[str]
) -> Grade | None:
    """Turn ``(label, points value)`` rows into a Grade; None if nothing in them refers to the rubric."""
    assigned = _assign(rows, matcher, notes)
    if all(item is None for item in assigned) and total is _MISSING:
        return None
    reported_total = None
    if total is not _MISSING:
        reported_total = _parse_total(total)
        if reported_total is None:
            notes.append(f"could not read reported total {_short(repr(total))}")
    groups: list[list[tuple[str, Any]]] = [[] for _ in matcher.labels]
    for (label, value), item in zip(rows, assigned, strict=True):
        if item is None:
            notes.append(f"ignored row {_short(label)!r}")
        else:
            groups[item].append((label, value))
    points, problems = _decide_groups(groups, matcher.labels, notes)
    if problems:
        error = "; ".join(problems)
        return Grade(None, error=error, fmt=fmt, reported_total=reported_total, notes=tuple(notes))
    if reported_total is not None and reported_total != sum(points):
        notes.append(f"reported total {reported_total} != sum of points {sum(points)}")
    return Grade(points, fmt=fmt, reported_total=reported_total, notes=tuple(notes))


def _assign(rows: list[tuple[str, Any]], matcher: _Matcher, notes: list[str]) -> list[int | None]:
    """The rubric item of each row by meaning; with exactly k+3 rows, unmatched rows fill free positions."""
    assigned = [matcher.classify(label) for label, _ in rows]
    if len(rows) == len(matcher.labels) and None in assigned:
        claimed = set(assigned)
        by_position = []
        for i, item in enumerate(assigned):
            if item is None and i not in claimed:
                assigned[i] = i
                claimed.add(i)
                by_position.append(_short(rows[i][0]) or "<empty>")
        if by_position:
            notes.append("rows matched by position: " + ", ".join(repr(label) for label in by_position))
    return assigned


def _decide_groups(
    groups: list[list[tuple[str, Any]]], labels: list[str], notes: list[str]
) -> tuple[list[int], list[str]]:
    """One point value per rubric item from the rows assigned to it, and the problems that prevent it."""
    points: list[int] = []
    problems: list[str] = []
    missing = [labels[i] for i, group in enumerate(groups) if not group]
    if missing:
        problems.append("missing rubric rows: " + ", ".join(missing))
    for name, group in zip(labels, groups, strict=True):
        parsed = [(label, *_parse_points(value)) for label, value in group]
        bad = [f"invalid points for {name!r} (row {_short(lbl)!r}): {why}" for lbl, _, why in parsed if why]
        problems.extend(bad)
        values = {p for _, p, why in parsed if not why}
        if len(values) > 1:
            problems.append(f"conflicting rows for {name!r}: " + ", ".join(str(p) for _, p, _ in parsed))
        elif len(group) > 1 and not bad:
            notes.append(f"{len(group)} rows for {name!r} agree")
        if values and not bad:
            points.append(values.pop())
    return points, problems


def _split_cells(line: str) -> list[str]:
    text = line.strip()
    text = text[1:] if text.startswith("|") else text
    text = text[:-1] if text.endswith("|") else text
    return [cell.strip() for cell in text.split("|")]


def _is_alignment(cells: list[str]) -> bool:
    return any(cells) and all(_ALIGN_CELL_RE.match(c.replace(" ", "")) for c in cells if c)


def _column_roles(header: list[str] | None, data: list[list[str]]) -> tuple[int, int]:
    """(label column, points column) of a table block, from its header if it has one, else inferred."""
    if header:
        norm = [_norm(cell) for cell in header]
        points_col = next((j for j, c in enumerate(norm) if _POINTS_HEADER_RE.search(c)), None)
        if points_col is not None:
            labels = [j for j, c in enumerate(norm) if j != points_col and _LABEL_HEADER_RE.search(c)]
            return (labels[0] if labels else int(points_col == 0)), points_col
    width = max((len(cells) for cells in data), default=2)
    counts = [
        sum(1 for cells in data if j < len(cells) and _SCORE_START_RE.match(_clean_cell(cells[j])))
        for j in range(width)
    ]
    points_col = max(range(1, width), key=lambda j: (counts[j], -j), default=1)
    first_numeric = all(_NUMERIC_CELL_RE.match(cells[0].strip()) for cells in data if cells)
    label_col = 1 if first_numeric and points_col != 1 and width > 2 else 0
    return label_col, points_col


def _from_table(text: str, matcher: _Matcher) -> Grade | None:
    blocks: list[list[list[str]]] = [[]]
    for line in text.split("\n"):
        if "|" in line and not line.lstrip().startswith("```"):
            blocks[-1].append(_split_cells(line))
        elif blocks[-1]:
            blocks.append([])
    rows: list[tuple[str, Any]] = []
    total: Any = _MISSING
    for block in blocks:
        aligned = [i for i, cells in enumerate(block) if _is_alignment(cells)]
        header_at = aligned[0] - 1 if aligned and aligned[0] > 0 else None
        if header_at is None and block and _looks_like_header(block[0], matcher):
            header_at = 0
        data = [cells for i, cells in enumerate(block) if i != header_at and i not in aligned and any(cells)]
        label_col, points_col = _column_roles(block[header_at] if header_at is not None else None, data)
        for cells in data:
            if len(cells) <= max(points_col, label_col):
                continue  # a row cut short (truncated output)
            if _is_total(cells[label_col]) or any(_is_total(cell) for cell in cells[:points_col]):
                total = cells[points_col]
            else:
                rows.append((cells[label_col], cells[points_col]))
    return _assemble(rows, matcher, "table", total, []) if rows or total is not _MISSING else None


def _looks_like_header(cells: list[str], matcher: _Matcher) -> bool:
    return (
        not any(_SCORE_START_RE.match(_clean_cell(cell)) for cell in cells)
        and any(_HEADER_RE.search(_norm(cell)) for cell in cells)
        and all(matcher.classify(cell) is None and not _is_total(cell) for cell in cells)
    )


def _from_lines(text: str, matcher: _Matcher) -> Grade | None:
    rows: list[tuple[str, Any]] = []
    total: Any = _MISSING
    for raw in text.split("\n"):
        stripped = raw.strip()
        if "|" in raw or stripped.startswith(("{", "}", "[", "]", '"', "```")) or '":' in raw:
            continue  # table rows and JSON fragments belong to the other readers
        line = _BULLET_RE.sub("", stripped.replace("*", "").replace("`", ""), count=1).strip()
        for sep in _LINE_SEP_RE.finditer(line):
            label, value = line[: sep.start()].strip(), line[sep.end() :].strip()
            if label and _SCORE_START_RE.match(_clean_cell(value)):
                if _is_total(label):
                    total = value
                elif len(label) <= 40 or matcher.classify(label) is not None:
                    rows.append((label, value))
                break
    if not any(matcher.classify(label) is not None for label, _ in rows):
        return None  # prose with a number after a colon is not a grade
    return _assemble(rows, matcher, "lines", total, [])


def _json_objects(text: str) -> tuple[list[Any], str | None]:
    """The JSON values that decode at a ``{`` or ``[`` in ``text``, up to the first broken object.

    Returns ``(values, error)`` where ``error`` is the decoder's message for the first place that looks like
    the start of a JSON object or array but does not decode (None if there is none).
    """
    decoder = json.JSONDecoder()
    found: list[Any] = []
    pos, attempts = 0, 0
    while attempts < _MAX_JSON_STARTS:
        m = _JSON_START_RE.search(text, pos)
        if m is None:
            break
        attempts += 1
        try:
            obj, end = decoder.raw_decode(text, m.start())
        except (ValueError, RecursionError) as exc:
            if _JSON_LIKELY_RE.match(text, m.start()):
                # A broken object: its inner fragments (e.g. a complete "criteria" list inside a truncated
                # object) must not pass for a whole grade, and we cannot tell where it ends, so stop here.
                return found, str(exc)
            pos = m.start() + 1
            continue
        found.append(obj)
        pos = end
    return found, None


def _lookup(obj: dict[Any, Any], keys: tuple[str, ...]) -> Any:
    normed = {_norm(k): v for k, v in obj.items() if isinstance(k, str)}
    return next((normed[k] for k in keys if k in normed), _MISSING)


def _json_rows(obj: Any) -> tuple[list[tuple[str, Any]], Any]:
    """``(label, value)`` rows and the total (or ``_MISSING``) from a decoded JSON grade."""
    if isinstance(obj, list):
        obj = {"criteria": obj}
    if not isinstance(obj, dict):
        return [], _MISSING
    rows: list[tuple[str, Any]] = []
    total: Any = _MISSING
    entries = _lookup(obj, _JSON_LIST_KEYS)
    if isinstance(entries, dict):
        flat = {**entries, **{k: v for k, v in obj.items() if _is_total(str(k))}}
    elif isinstance(entries, list):
        for entry in entries:
            if isinstance(entry, dict):
                label = _lookup(entry, _JSON_LABEL_KEYS)
                value = _lookup(entry, _JSON_POINT_KEYS)
                label = label if isinstance(label, str) else ""
                if _is_total(label):
                    total = value
                else:
                    rows.append((label, None if value is _MISSING else value))
            elif isinstance(entry, (list, tuple)) and len(entry) == 2:
                rows.append((str(entry[0]), entry[1]))
        flat = {k: v for k, v in obj.items() if _is_total(str(k))}
    else:
        flat = obj
    for key, value in flat.items():
        key = str(key)
        if _is_total(key):
            total = value
        elif _norm(key) not in _JSON_SKIP_KEYS and not isinstance(value, list):
            if isinstance(value, dict):
                value = _lookup(value, _JSON_POINT_KEYS)
                value = None if value is _MISSING else value
            rows.append((key, value))
    return rows, total


def _from_json(text: str, matcher: _Matcher) -> tuple[Grade | None, str | None]:
    objects, error = _json_objects(text)
    queue = list(objects)
    while queue:
        obj = queue.pop(0)
        rows, total = _json_rows(obj)
        grade = _assemble(rows, matcher, "json", total, [])
        if grade is not None:
            return grade, error
        if isinstance(obj, dict):  # a grade nested one level down, e.g. {"grade": {...}}
            queue.extend(v for v in obj.values() if isinstance(v, dict))
    return None, error


def parse_grade(grader_output: str | None, skills: Iterable[Any], topic: str) -> Grade:
    """Parse a grader's output for a text written for ``skills`` and ``topic``.

    Returns a :class:`Grade` whose ``points`` are in rubric order (see :func:`rubric_items`), or whose
    ``error`` explains what could not be read. Never raises for any string (or None) ``grader_output``.
    """
    matcher = _Matcher(skills, topic)
    if grader_output is None or (isinstance(grader_output, str) and not grader_output.strip()):
        return Grade(None, error="empty grader output")
    if not isinstance(grader_output, str):
        return Grade(None, error=f"grader output is a {type(grader_output).__name__}, not a string")
    try:
        text = grader_output.replace("\r\n", "\n").replace("\r", "\n")
        json_grade, json_error = _from_json(text, matcher)
        readings = (_from_table(text, matcher), json_grade, _from_lines(text, matcher))
        found = [grade for grade in readings if grade is not None]
        for grade in found:
            if grade.ok:
                return grade
        if found:
            return found[0]
        if json_error is not None:
            return Grade(None, error=f"malformed JSON: {json_error}", fmt="json")
        return Grade(None, error="no rubric table, JSON or point lines found")
    except Exception as exc:  # a parser bug must not take a grading run down with it
        return Grade(None, error=f"internal parser error: {type(exc).__name__}: {exc}")
