"""Sampling (k skills, topic) combinations for the protocol's datasets and evaluation settings.

Settings (2409.19808):

========== ============================ ===============================================
setting    skills                       topics
========== ============================ ===============================================
``k1``     all skills (k must be 1)     training topics  -> D_SKILL-MIX(1)
``train``  training skills              training topics  -> D_SKILL-MIX(k>=2), SKILL-MIX_train(k)
``held-out`` held-out skills            held-out topics  -> SKILL-MIX_held-out(k)
``all``    all skills                   all topics       -> SKILL-MIX_all(k)
========== ============================ ===============================================

Draws are seeded and deterministic given the catalog content, the split and the seed; no combination
(set of skills, topic) repeats; the order of the skills inside a sample is shuffled; and the draw is
balanced: each sample takes the least-used skills and topic so far (ties broken at random), so every
eligible skill is used ``floor`` or ``ceil`` of ``n * k / skills`` times. ``SampleSet.usage_ratio`` reports
the max/min usage.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from skillmix.catalog import Skill
from skillmix.skills import skill_name

if TYPE_CHECKING:
    from skillmix.catalog import Catalog
    from skillmix.splits import Split

SETTINGS: tuple[str, ...] = ("train", "held-out", "all", "k1")
MAX_ENUMERATED = 250_000  # combinations we are willing to list exhaustively


class SamplingError(ValueError):
    """Impossible request: k out of range, unknown setting, or more combinations than exist."""


CombinationKey = tuple[frozenset[str], str]


def combination_key(skills: Iterable[Any], topic: Any) -> CombinationKey:
    """The order-free identity of a combination: the set of its skill names (as written, case kept) and
    its topic. ``skills`` are names, :class:`Skill` records or mappings with a ``name``; the same skills in
    any order on the same topic are the same combination (what the leakage checks and the prompt set
    compare)."""
    return frozenset(skill_name(s) for s in skills), str(topic)


@dataclass(frozen=True)
class Combination:
    """One sample: k skills in the order they are shown to the model, and a topic."""

    skills: tuple[Skill, ...]
    topic: str
    setting: str

    @property
    def k(self) -> int:
        return len(self.skills)

    @property
    def key(self) -> CombinationKey:
        """Order-free identity (:func:`combination_key`)."""
        return combination_key(self.skills, self.topic)

    @property
    def id(self) -> str:
        """A stable, order-free id, e.g. ``k3-1f2e3d4c5b6a``."""
        names = "\x1f".join(sorted(s.name for s in self.skills))
        digest = hashlib.sha256(f"{names}\x1e{self.topic}".encode()).hexdigest()[:12]
        return f"k{self.k}-{digest}"

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "k": self.k,
            "setting": self.setting,
            "skills": [s.name for s in self.skills],
            "categories": [s.category for s in self.skills],
            "topic": self.topic,
        }


@dataclass(frozen=True)
class SampleSet:
    """The combinations of one draw, with how it was drawn and how evenly it used the skills."""

    combinations: tuple[Combination, ...]
    k: int
    setting: str
    seed: int
    split_hash: str
    eligible_skills: tuple[str, ...]
    eligible_topics: tuple[str, ...]

    def __iter__(self) -> Iterator[Combination]:
        return iter(self.combinations)

    def __len__(self) -> int:
        return len(self.combinations)

    def __getitem__(self, index: int) -> Combination:
        return self.combinations[index]

    @property
    def skill_usage(self) -> dict[str, int]:
        usage = dict.fromkeys(self.eligible_skills, 0)
        for combo in self.combinations:
            for skill in combo.skills:
                usage[skill.name] += 1
        return usage

    @property
    def topic_usage(self) -> dict[str, int]:
        usage = dict.fromkeys(self.eligible_topics, 0)
        for combo in self.combinations:
            usage[combo.topic] += 1
        return usage

    @property
    def usage_ratio(self) -> float:
        """max/min number of uses over eligible skills (1.0 is perfectly even; inf if a skill is unused)."""
        counts = list(self.skill_usage.values())
        return math.inf if min(counts) == 0 else max(counts) / min(counts)


def eligible(catalog: Catalog, setting: str, split: Split) -> tuple[tuple[Skill, ...], tuple[str, ...]]:
    """The skills and topics a setting draws from."""
    if setting == "k1":
        return tuple(sorted(catalog.skills, key=lambda s: s.name)), split.training_topics
    if setting == "train":
        return split.training_skills, split.training_topics
    if setting == "held-out":
        return split.heldout_skills, split.heldout_topics
    if setting == "all":
        return tuple(sorted(catalog.skills, key=lambda s: s.name)), tuple(sorted(catalog.topics))
    raise SamplingError(f"unknown setting {setting!r} (choose from {', '.join(SETTINGS)})")


def count_combinations(n_skills: int, n_topics: int, k: int) -> int:
    return math.comb(n_skills, k) * n_topics


def sample_combinations(
    catalog: Catalog,
    k: int,
    n: int | None,
    setting: str = "train",
    seed: int = 0,
    split: Split | None = None,
) -> SampleSet:
    """Draw ``n`` distinct, balanced (k skills, topic) combinations; ``n=None`` takes every combination.

    ``split`` defaults to ``catalog.split(0)``. Raises :class:`SamplingError` for k < 1, k above the number
    of eligible skills, ``setting="k1"`` with k != 1, or n above the number of distinct combinations.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise SamplingError(f"k must be an integer >= 1, got {k!r}")
    if setting == "k1" and k != 1:
        raise SamplingError(f"setting 'k1' is for k=1, got k={k}")
    split = split if split is not None else catalog.split(0)
    skills, topics = eligible(catalog, setting, split)
    if k > len(skills):
        raise SamplingError(f"k={k} exceeds the {len(skills)} skills eligible in setting {setting!r}")
    total = count_combinations(len(skills), len(topics), k)
    if n is None:
        if total > MAX_ENUMERATED:
            raise SamplingError(f"n=None would list all {total:,} combinations; pass n")
        n = total
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise SamplingError(f"n must be a non-negative integer, got {n!r}")
    if n > total:
        raise SamplingError(
            f"n={n} exceeds the {total:,} distinct combinations of k={k} in setting {setting!r}"
        )
    rng = random.Random(f"skillmix-sample-{setting}-{k}-{seed}-{split.hash}")
    combos = _draw(skills, topics, k, n, total, rng)
    return SampleSet(
        combinations=tuple(Combination(tuple(c[0]), c[1], setting) for c in combos),
        k=k,
        setting=setting,
        seed=seed,
        split_hash=split.hash,
        eligible_skills=tuple(s.name for s in skills),
        eligible_topics=tuple(topics),
    )


def _draw(
    skills: tuple[Skill, ...], topics: tuple[str, ...], k: int, n: int, total: int, rng: random.Random
) -> list[tuple[list[Skill], str]]:
    if n == total:  # every combination: list them all, in random order
        everything = [(list(c), t) for c in itertools.combinations(skills, k) for t in topics]
        rng.shuffle(everything)
        for chosen, _ in everything:
            rng.shuffle(chosen)
        return everything
    skill_use = dict.fromkeys(range(len(skills)), 0)
    topic_use = dict.fromkeys(topics, 0)
    used: set[tuple[frozenset[int], str]] = set()
    out: list[tuple[list[Skill], str]] = []
    for _ in range(n):
        pick = _greedy_pick(skill_use, topic_use, used, k, rng)
        if pick is None:  # dense regime: the least-used choices are all taken, scan what is left
            pick = _scan_pick(len(skills), topics, skill_use, topic_use, used, k, total, rng)
        chosen, topic = pick
        used.add((frozenset(chosen), topic))
        for i in chosen:
            skill_use[i] += 1
        topic_use[topic] += 1
        order = list(chosen)
        rng.shuffle(order)
        out.append(([skills[i] for i in order], topic))
    return out


def _greedy_pick(skill_use, topic_use, used, k, rng, attempts: int = 30):
    for attempt in range(attempts):
        slack = attempt // 10  # widen the pool of "least used" skills after repeated collisions
        floor = min(skill_use.values())
        pool = [i for i, u in skill_use.items() if u <= floor + slack]
        keyed = sorted(pool, key=lambda i: (skill_use[i], rng.random()))
        if len(keyed) < k:
            keyed = sorted(skill_use, key=lambda i: (skill_use[i], rng.random()))
        chosen = frozenset(keyed[:k])
        free = [t for t in topic_use if (chosen, t) not in used]
        if free:
            low = min(topic_use[t] for t in free)
            topic = rng.choice([t for t in free if topic_use[t] == low])
            return chosen, topic
    return None


def _scan_pick(n_skills, topics, skill_use, topic_use, used, k, total, rng):
    if total > MAX_ENUMERATED:
        raise SamplingError("could not find a new combination; ask for fewer combinations")
    best, best_cost = [], None
    for chosen in itertools.combinations(range(n_skills), k):
        key = frozenset(chosen)
        base = sum(skill_use[i] for i in chosen)
        for topic in topics:
            if (key, topic) in used:
                continue
            cost = (base, topic_use[topic])
            if best_cost is None or cost < best_cost:
                best, best_cost = [(key, topic)], cost
            elif cost == best_cost:
                best.append((key, topic))
    return rng.choice(best)
