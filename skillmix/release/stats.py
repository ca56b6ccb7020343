"""Descriptive statistics of a built Skill-Mix dataset, for its card and its figures.

:func:`dataset_stats` takes the rows of every config (``k1``, ``k2``, ... hold the kept rows, ``rejected``
and ``failed`` the others; the schema of ``pipelines/rows.py``) and returns one JSON-serialisable dict.
Every mapping key is a string (``"k3"`` for k = 3, ``"2"`` for a histogram bin), so the dict is equal to
its own JSON round trip; ``None`` stands for a rate or a statistic of nothing.

Layout (``K`` is ``"k1"``, ``"k2"``, ...; the ks are those of the config names and of the rows' ``k``)::

    ks                       [1, 2, 3]
    rows                     {config: number of rows}
    per_k                    {K: {kept, rejected, failed, graded, acceptance_rate}}
    judge_pass_rates         {K: {n, skills, topic, sense, length,
                                  decided: {n, skills, topic, sense, length},
                                  length_override_changed}}
    skill_usage              {skill: {K: uses in kept rows}}
    skill_usage_summary      {K: {min, max, mean, used, skills}}
    topic_coverage           {per_k: {K: {distinct, counts: {topic: n}}}, distinct, unused}
    sentences                {K: {"n_sentences": rows}}
    words                    {K: {n, mean, median, p10, p90, max}}
    score_distribution       {K: {"0": rows, ..., "k+3": rows}}
    failures                 {"status: stage": rows}

``judge_pass_rates`` are over the graded rows (kept + rejected). The judge's vote of a row is the strict
majority, point by point, over the runs of ``grader_points`` whose ``grader_status`` is ``"ok"`` (a run
that could not be parsed does not vote; a tie earns 0); ``skills`` is the mean over the k skill items.
``decided`` is the same from the row's ``points`` (after the length override and the name penalty), and
``length_override_changed`` counts the rows whose length point differs between the two.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from skillmix.dataset_folder.layout import K_CONFIG, failures_by_reason
from skillmix.text import count_sentences

_ITEMS = ("topic", "sense", "length")  # the three rubric items after the k skill items


def dataset_stats(
    configs: Mapping[str, Sequence[Mapping[str, Any]]],
    catalog_skills: Iterable[str] | None = None,
    catalog_topics: Iterable[str] | None = None,
) -> dict[str, Any]:
    """Statistics of a dataset given as {config name: rows}; see the module docstring for the layout."""
    kept: list[tuple[int, Mapping[str, Any]]] = []
    rejected: list[tuple[int, Mapping[str, Any]]] = []
    failed: list[tuple[int, Mapping[str, Any]]] = []
    ks: set[int] = set()
    for name, rows in configs.items():
        match = K_CONFIG.fullmatch(name)
        if match:
            ks.add(int(match.group(1)))
            kept.extend((_k_of(row, int(match.group(1))), row) for row in rows)
        elif name == "rejected":
            rejected.extend((_k_of(row), row) for row in rows)
        elif name == "failed":
            failed.extend((_k_of(row), row) for row in rows)
    ks.update(k for k, _ in (*kept, *rejected, *failed) if k is not None)
    k_values = sorted(ks)

    def of_k(rows: list[tuple[int, Mapping[str, Any]]], k: int) -> list[Mapping[str, Any]]:
        return [row for row_k, row in rows if row_k == k]

    kept_by_k = {k: of_k(kept, k) for k in k_values}
    graded_by_k = {k: kept_by_k[k] + of_k(rejected, k) for k in k_values}
    skill_usage, usage_summary = _skill_usage(kept_by_k, catalog_skills)
    return {
        "ks": k_values,
        "rows": {name: len(rows) for name, rows in configs.items()},
        "per_k": {
            _key(k): _outcomes(len(kept_by_k[k]), len(of_k(rejected, k)), len(of_k(failed, k)))
            for k in k_values
        },
        "judge_pass_rates": {_key(k): _pass_rates(graded_by_k[k], k) for k in k_values},
        "skill_usage": skill_usage,
        "skill_usage_summary": usage_summary,
        "topic_coverage": _topic_coverage(kept_by_k, catalog_topics),
        "sentences": {_key(k): _sentence_histogram(kept_by_k[k]) for k in k_values},
        "words": {_key(k): _word_stats(kept_by_k[k]) for k in k_values},
        "score_distribution": {_key(k): _score_histogram(graded_by_k[k], k) for k in k_values},
        "failures": failures_by_reason(row for _, row in failed),
    }


def _key(k: int) -> str:
    return f"k{k}"


def _k_of(row: Mapping[str, Any], default: int | None = None) -> int | None:
    """The row's k: its ``k`` column, else the number of its skills, else the config's k."""
    if row.get("k") is not None:
        return int(row["k"])
    skills = _list(row.get("skills"))
    if skills:
        return len(skills)
    return default


def _list(value: Any) -> list[Any]:
    """A list column as a list (None -> []); works for lists, tuples and numpy arrays."""
    return [] if value is None else list(value)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _outcomes(kept: int, rejected: int, failed: int) -> dict[str, Any]:
    graded = kept + rejected
    return {
        "kept": kept,
        "rejected": rejected,
        "failed": failed,
        "graded": graded,
        "acceptance_rate": _ratio(kept, graded),
    }


def _as_points(points: Any, width: int) -> list[int | None] | None:
    """A points vector of the right width as ints (None for a missing or negative point), else None."""
    if points is None or len(points) != width:
        return None
    return [None if p is None or p < 0 else int(p) for p in points]


def judge_vote(row: Mapping[str, Any], k: int) -> list[int] | None:
    """The judge's own decision on a row: strict majority per point over the runs with status ``ok``.

    A run that is not ``ok`` (unparseable, refused, ...) or has the wrong width does not vote; a point
    with as many 1s as 0s earns 0. None when no run voted.
    """
    width = k + 3
    statuses = _list(row.get("grader_status"))
    runs = []
    for points, status in zip(_list(row.get("grader_points")), statuses, strict=False):
        vector = _as_points(points, width) if status == "ok" else None
        if vector is not None:
            runs.append(vector)
    if not runs:
        return None
    from skillmix.metrics import majority_vote  # numpy: imported only when rows are voted on

    decided = majority_vote([[float("nan") if p is None else p for p in run] for run in runs])
    return [0 if d != d else int(d) for d in decided]  # a point no run voted on (NaN) earns 0


def _rates(vectors: list[list[int | None]], k: int) -> dict[str, Any]:
    """Pass rates of the skill items (pooled), topic, sense and length over points vectors."""
    n = len(vectors)
    skill_passes = sum(p == 1 for v in vectors for p in v[:k])
    out: dict[str, Any] = {"n": n, "skills": _ratio(skill_passes, n * k)}
    for offset, item in enumerate(_ITEMS):
        out[item] = _ratio(sum(v[k + offset] == 1 for v in vectors), n)
    return out


def _pass_rates(graded: list[Mapping[str, Any]], k: int) -> dict[str, Any]:
    votes, decided, changed = [], [], 0
    for row in graded:
        vote = judge_vote(row, k)
        points = _as_points(row.get("points"), k + 3)
        if vote is not None:
            votes.append(vote)
        if points is not None:
            decided.append(points)
        if vote is not None and points is not None and (vote[k + 2] == 1) != (points[k + 2] == 1):
            changed += 1
    return {**_rates(votes, k), "decided": _rates(decided, k), "length_override_changed": changed}


def _skill_usage(
    kept_by_k: dict[int, list[Mapping[str, Any]]], catalog_skills: Iterable[str] | None
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, Any]]]:
    counts = {
        k: Counter(str(skill) for row in rows for skill in _list(row.get("skills")))
        for k, rows in kept_by_k.items()
    }
    seen: set[str] = set().union(*counts.values())
    if catalog_skills is not None:
        universe = list(dict.fromkeys(str(s) for s in catalog_skills))
        universe += sorted(seen - set(universe))  # skills of the rows that the catalog lacks
    else:
        universe = sorted(seen)
    usage = {skill: {_key(k): counts[k][skill] for k in kept_by_k} for skill in universe}
    summary = {}
    for k in kept_by_k:
        values = [counts[k][skill] for skill in universe]
        summary[_key(k)] = {
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "mean": _ratio(sum(values), len(values)),
            "used": sum(v > 0 for v in values),
            "skills": len(values),
        }
    return usage, summary


def _topic_coverage(
    kept_by_k: dict[int, list[Mapping[str, Any]]], catalog_topics: Iterable[str] | None
) -> dict[str, Any]:
    per_k = {}
    used: set[str] = set()
    for k, rows in kept_by_k.items():
        counts = Counter(str(row["topic"]) for row in rows if row.get("topic") is not None)
        used.update(counts)
        ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        per_k[_key(k)] = {"distinct": len(counts), "counts": dict(ordered)}
    unused = None
    if catalog_topics is not None:
        unused = [t for t in dict.fromkeys(str(t) for t in catalog_topics) if t not in used]
    return {"per_k": per_k, "distinct": len(used), "unused": unused}


def _sentence_histogram(rows: list[Mapping[str, Any]]) -> dict[str, int]:
    counts: Counter[int] = Counter()
    for row in rows:
        n = row.get("sentences")
        if n is None and row.get("answer") is not None:
            n = count_sentences(row["answer"])
        if n is not None:
            counts[int(n)] += 1
    return {str(n): counts[n] for n in sorted(counts)}


def _percentile(ordered: list[int], q: float) -> float:
    """Linear-interpolation percentile of sorted values (numpy's default method)."""
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _word_stats(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    words = sorted(len(str(row["answer"]).split()) for row in rows if row.get("answer") is not None)
    if not words:
        return {"n": 0, "mean": None, "median": None, "p10": None, "p90": None, "max": None}
    return {
        "n": len(words),
        "mean": sum(words) / len(words),
        "median": _percentile(words, 50),
        "p10": _percentile(words, 10),
        "p90": _percentile(words, 90),
        "max": words[-1],
    }


def _score_histogram(graded: list[Mapping[str, Any]], k: int) -> dict[str, int]:
    counts = dict.fromkeys(range(k + 4), 0)
    for row in graded:
        points = _as_points(row.get("points"), k + 3)
        if points is not None:
            counts[sum(p == 1 for p in points)] += 1
    return {str(n): c for n, c in counts.items()}
