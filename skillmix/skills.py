"""What a catalog is made of: the skill record, the eight skill categories, the catalog error, and the
content hash that identifies a catalog or a split (shared by :mod:`skillmix.catalog` and
:mod:`skillmix.splits`, which import it and not each other's internals).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

CATEGORIES: tuple[str, ...] = (
    "literary",
    "rhetorical",
    "reasoning",
    "logical",
    "theory of mind",
    "pragmatics",
    "common sense",
    "physical knowledge",
)
TRAINING_CATEGORIES: tuple[str, ...] = ("literary", "rhetorical")
SKILL_FIELDS: tuple[str, ...] = ("category", "skill", "definition", "example")


class CatalogError(ValueError):
    """A catalog file is missing, unreadable or malformed; the message names the file and row."""


@dataclass(frozen=True)
class Skill:
    name: str
    category: str
    definition: str
    example: str
    row: str | None = field(default=None, compare=False, repr=False)  # where it was read, for errors

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "category": self.category,
            "definition": self.definition,
            "example": self.example,
        }


def skill_name(skill: Any) -> str:
    """The name of a skill given as its name, a :class:`Skill`, or a record (a mapping with ``name``)."""
    if isinstance(skill, str):
        return skill
    if isinstance(skill, dict):
        return str(skill["name"])
    return str(skill.name)


def normalize_category(category: str) -> str:
    """Lower-case, `_`/`-` and runs of spaces folded to one space ("Theory_of-Mind" -> "theory of mind")."""
    return " ".join(category.replace("_", " ").replace("-", " ").lower().split())


def content_hash(payload: Any) -> str:
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
