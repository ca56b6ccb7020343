"""Which graded rows go to review: a stratified, seeded sample, and the share that gets two annotators.

A row's stratum is ``(k, outcome, failed)``: its k, ``kept`` or ``rejected``, and which kinds of rubric item
its decided points missed (``none`` for a kept row; else ``skill``, ``topic``, ``sense`` and ``length``
joined by ``+`` in rubric order, the k skill items counting as one kind, since the position of a skill in
the rubric is arbitrary). Allocation of ``n`` rows: one row to each stratum first (the largest strata first
when ``n`` is smaller than their number), then the rest in proportion to what each stratum has left
(largest remainders); ``n`` at or above the number of rows takes them all. Inside a stratum the rows are
taken in an order shuffled with ``seed`` from their ids, so the same folder, ``n`` and ``seed`` always
give the same sample. Failed rows are never sampled (they have no grade to review).

Two draws over the sample, each seeded on its own stream: the records **shown** the judge's answers
(``--show-judge``, a fast correction pass whose answers measure nothing) and, among the others, the records
for **two annotators** (two people on a pre-filled record would measure nothing either). A share of ``n``
records is ``round(share * n)`` of them, halves rounded up.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from skillmix.config import ConfigError

OTHER_ITEMS = ("topic", "sense", "length")  # the three rubric items after the k skill items
Stratum = tuple[int, str, str]


def failed_kinds(points: Sequence[int], k: int) -> str:
    """``none``, or the kinds of rubric item missed (``skill``, ``topic``, ``sense``, ``length``)."""
    kinds = ["skill" if i < k else OTHER_ITEMS[i - k] for i, p in enumerate(points) if p != 1]
    return "+".join(dict.fromkeys(kinds)) or "none"


def stratum(row: Mapping[str, Any]) -> Stratum:
    return int(row["k"]), str(row["outcome"]), failed_kinds(row["points"], int(row["k"]))


def allocate(sizes: Mapping[Stratum, int], n: int) -> dict[Stratum, int]:
    """How many rows to take from each stratum (see the module docstring)."""
    if n >= sum(sizes.values()):
        return dict(sizes)
    order = sorted((s for s in sizes if sizes[s] > 0), key=lambda s: (-sizes[s], s))
    take = {s: 0 for s in sizes}
    for s in order[:n]:
        take[s] = 1
    left = n - sum(take.values())
    room = {s: sizes[s] - take[s] for s in order if sizes[s] > take[s]}
    if left > 0 and room:
        quotas = {s: left * r / sum(room.values()) for s, r in room.items()}
        for s, quota in quotas.items():
            take[s] += min(room[s], math.floor(quota))
        rest = n - sum(take.values())
        by_remainder = sorted(quotas, key=lambda s: (-(quotas[s] - math.floor(quotas[s])), s))
        for s in [s for s in by_remainder if take[s] < sizes[s]][:rest]:
            take[s] += 1
    return take


def stratified_sample(rows: Iterable[Mapping[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` graded rows drawn by stratum (failed rows are skipped), ordered by stratum then draw."""
    groups: dict[Stratum, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("outcome") in ("kept", "rejected") and row.get("points"):
            groups.setdefault(stratum(row), []).append(dict(row))
    take = allocate({s: len(g) for s, g in groups.items()}, max(0, n))
    rng = np.random.default_rng(seed)
    sample = []
    for s in sorted(groups):
        group = sorted(groups[s], key=lambda r: str(r["id"]))
        order = rng.permutation(len(group))
        sample.extend(group[i] for i in order[: take[s]])
    return sample


def _draw(
    ids: Iterable[str], share: float, flag: str, stream: int, seed: int, exclude: Iterable[str] = ()
) -> set[str]:
    """``round(share * len(ids))`` of ``ids`` (at most those not in ``exclude``), drawn with ``seed``."""
    if not 0.0 <= share <= 1.0:
        raise ConfigError(f"{flag} must be a share between 0 and 1, got {share}")
    every = sorted(set(ids))
    count = math.floor(share * len(every) + 0.5)
    skip = set(exclude)
    eligible = [i for i in every if i not in skip]
    chosen = np.random.default_rng([seed, stream]).permutation(len(eligible))[:count]
    return {eligible[i] for i in chosen}


def two_annotator_ids(
    ids: Iterable[str], share: float, seed: int = 0, exclude: Iterable[str] = ()
) -> set[str]:
    """The ids of ``round(share * len(ids))`` rows for two annotators, drawn with ``seed`` from those not in
    ``exclude`` (the shown records; fewer when too few are left)."""
    return _draw(ids, share, "--two-annotators", 2, seed, exclude)


def shown_ids(ids: Iterable[str], share: float, seed: int = 0) -> set[str]:
    """The ids of ``round(share * len(ids))`` rows shown the judge's answers (``--show-judge``)."""
    return _draw(ids, share, "--show-judge", 3, seed)


def strata_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """``{"k3/rejected/skill": rows}``: the strata of a sample, for the summary and the tests."""
    counts: dict[str, int] = {}
    for row in rows:
        key = "/".join(str(part) for part in stratum(row))
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))
