"""The train / held-out split of 2409.19808: skills by category, topics at random.

Skills are split by category, never at random (a random split would put near-identical skills on both
sides): the literary and rhetorical skills train, every other category is held out. Topics are shuffled
with a seed and cut in half. The split is a pure function of the catalog's content and the seed, and is
recorded with a SHA-256 content hash so that a dataset, a model and an evaluation can prove they used the
same one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

from skillmix.skills import CATEGORIES, TRAINING_CATEGORIES, CatalogError, Skill, content_hash


class SkillsAndTopics(Protocol):
    """What a split is made from (a :class:`skillmix.catalog.Catalog`)."""

    skills: tuple[Skill, ...]
    topics: tuple[str, ...]
    source: str

    @property
    def hash(self) -> str: ...


@dataclass(frozen=True)
class Split:
    seed: int
    training_categories: tuple[str, ...]
    training_skills: tuple[Skill, ...]
    heldout_skills: tuple[Skill, ...]
    training_topics: tuple[str, ...]
    heldout_topics: tuple[str, ...]
    catalog_hash: str

    @property
    def skills_hash(self) -> str:
        return content_hash(
            {
                "train": [s.name for s in self.training_skills],
                "held-out": [s.name for s in self.heldout_skills],
            }
        )

    @property
    def topics_hash(self) -> str:
        return content_hash({"train": list(self.training_topics), "held-out": list(self.heldout_topics)})

    @property
    def hash(self) -> str:
        """One hash for the whole split: the catalog content, the seed and both sides of both splits."""
        return content_hash(
            {
                "catalog": self.catalog_hash,
                "seed": self.seed,
                "skills": self.skills_hash,
                "topics": self.topics_hash,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "training_categories": list(self.training_categories),
            "training_skills": [s.name for s in self.training_skills],
            "heldout_skills": [s.name for s in self.heldout_skills],
            "training_topics": list(self.training_topics),
            "heldout_topics": list(self.heldout_topics),
            "catalog_hash": self.catalog_hash,
            "skills_hash": self.skills_hash,
            "topics_hash": self.topics_hash,
            "hash": self.hash,
        }


def make_split(
    catalog: SkillsAndTopics, seed: int = 0, training_categories: tuple[str, ...] = TRAINING_CATEGORIES
) -> Split:
    unknown_training = [c for c in training_categories if c not in CATEGORIES]
    if unknown_training:
        raise CatalogError(
            f"unknown training category {unknown_training[0]!r} (known: {', '.join(CATEGORIES)})"
        )
    for skill in catalog.skills:
        if skill.category not in CATEGORIES:
            raise CatalogError(
                f"{skill.row or catalog.source}: unknown category {skill.category!r} for skill "
                f"{skill.name!r} (known: {', '.join(CATEGORIES)})"
            )
    ordered = sorted(catalog.skills, key=lambda s: s.name)
    training = tuple(s for s in ordered if s.category in training_categories)
    heldout = tuple(s for s in ordered if s.category not in training_categories)
    if not training or not heldout:
        side = "training" if not training else "held-out"
        raise CatalogError(f"{catalog.source}: the split leaves no {side} skills")
    if len(catalog.topics) < 2:
        raise CatalogError(f"{catalog.source}: a topic split needs at least two topics")
    topics = sorted(catalog.topics)
    random.Random(f"skillmix-topics-{seed}").shuffle(topics)
    half = (len(topics) + 1) // 2
    return Split(
        seed=seed,
        training_categories=tuple(training_categories),
        training_skills=training,
        heldout_skills=heldout,
        training_topics=tuple(sorted(topics[:half])),
        heldout_topics=tuple(sorted(topics[half:])),
        catalog_hash=catalog.hash,
    )
