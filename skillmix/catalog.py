"""The skill and topic catalog: the built-in one shipped with the package, and user catalogs.

A catalog is a tuple of :class:`Skill` (name, category, one-line definition, one example) and a tuple of
topic names. It loads from

* ``"builtin"``: the 101 skills and 100 topics in ``skillmix/data/`` (written for this project; only the ten
  publicly released skill and topic names come from the papers);
* a CSV in the original Skill-Mix layout (``category, skill, definition, example``; extra columns are
  ignored), whose topics come from ``topics=`` or, failing that, from the built-in list;
* a YAML or JSON file with ``skills:`` (a list of mappings with the same four fields) and optionally
  ``topics:`` (a list of names).

A malformed catalog raises :class:`CatalogError` with a message naming the file and the row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from skillmix.skills import (
    CATEGORIES,
    SKILL_FIELDS,
    TRAINING_CATEGORIES,
    CatalogError,
    Skill,
    content_hash,
    normalize_category,
)
from skillmix.splits import Split, make_split

__all__ = [
    "CATEGORIES",
    "TRAINING_CATEGORIES",
    "Catalog",
    "CatalogError",
    "Skill",
    "content_hash",
    "load_catalog",
]


@dataclass(frozen=True)
class Catalog:
    skills: tuple[Skill, ...]
    topics: tuple[str, ...]
    source: str = "builtin"

    def __post_init__(self) -> None:
        if not self.skills:
            raise CatalogError(f"{self.source}: the catalog has no skills")
        if not self.topics:
            raise CatalogError(f"{self.source}: the catalog has no topics")

    def skill(self, name: str) -> Skill:
        for skill in self.skills:
            if skill.name == name:
                return skill
        raise KeyError(f"unknown skill {name!r}")

    def by_category(self) -> dict[str, list[Skill]]:
        groups: dict[str, list[Skill]] = {}
        for skill in self.skills:
            groups.setdefault(skill.category, []).append(skill)
        return groups

    @property
    def hash(self) -> str:
        """SHA-256 of the content (skills sorted by name, topics sorted), independent of file order."""
        payload = {
            "skills": sorted((s.to_dict() for s in self.skills), key=lambda d: d["name"]),
            "topics": sorted(self.topics),
        }
        return content_hash(payload)

    def split(self, seed: int = 0, training_categories: Iterable[str] = TRAINING_CATEGORIES) -> Split:
        """The protocol's train/held-out split: skills by category, topics 50/50 at random with ``seed``."""
        return make_split(self, seed=seed, training_categories=tuple(training_categories))


def load_catalog(path_or_name: str | Path = "builtin", topics: str | Path | None = None) -> Catalog:
    """Load the built-in catalog or a user catalog (CSV, YAML or JSON); ``topics`` overrides its topics."""
    if str(path_or_name) == "builtin":
        data_dir = resources.files("skillmix") / "data"
        skills = _skills_from_records(
            _read_yaml_json(data_dir / "skills.yaml", "builtin skills.yaml")["skills"], "builtin"
        )
        found_topics = _topics_from_list(
            _read_yaml_json(data_dir / "topics.yaml", "builtin topics.yaml")["topics"], "builtin"
        )
        source = "builtin"
    else:
        path = Path(path_or_name)
        if not path.is_file():
            raise CatalogError(f"{path}: no such catalog file")
        source = str(path)
        found_topics = None
        if path.suffix.lower() == ".csv":
            skills = _skills_from_csv(path)
        elif path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = _read_yaml_json(path, source)
            if not isinstance(data, dict) or "skills" not in data:
                raise CatalogError(f"{source}: expected a mapping with a 'skills' list")
            skills = _skills_from_records(data["skills"], source)
            if data.get("topics") is not None:
                found_topics = _topics_from_list(data["topics"], source)
        else:
            raise CatalogError(f"{source}: unknown catalog format {path.suffix!r} (use .csv, .yaml or .json)")
    if topics is not None:
        found_topics = load_topics(topics)
    if found_topics is None:
        found_topics = load_catalog("builtin").topics
    return Catalog(skills=tuple(skills), topics=tuple(found_topics), source=source)


def load_topics(path: str | Path) -> tuple[str, ...]:
    """Topics from a YAML/JSON list or ``topics:`` mapping, a CSV with a ``topic`` column, or plain lines."""
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"{path}: no such topics file")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml", ".json"):
        data = _read_yaml_json(path, str(path))
        if isinstance(data, dict):
            data = data.get("topics")
        return _topics_from_list(data, str(path))
    text = _read_text(path)
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "topic" not in columns:
            raise CatalogError(f"{path}: missing column 'topic' (header has: {', '.join(columns)})")
        reader.fieldnames = columns
        return _topics_from_list([row.get("topic") or "" for row in reader], str(path), first_row=2)
    return _topics_from_list([line for line in text.splitlines() if line.strip()], str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read catalog: {exc}") from None


def _read_yaml_json(path: Any, source: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CatalogError(f"{source}: cannot parse catalog: {first_line}") from None


def _skills_from_csv(path: Path) -> list[Skill]:
    reader = csv.reader(_read_text(path).splitlines())
    header = next(reader, None)
    if not header:
        raise CatalogError(f"{path}: empty file")
    columns = [c.strip().lower() for c in header]
    missing = [f for f in SKILL_FIELDS if f not in columns]
    if missing:
        raise CatalogError(
            f"{path}: missing column {', '.join(repr(m) for m in missing)} (header has: {', '.join(columns)})"
        )
    index = {name: columns.index(name) for name in SKILL_FIELDS}
    records = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            records.append(None)  # keep row numbers aligned with the file
            continue
        records.append({f: (row[i] if i < len(row) else "") for f, i in index.items()})
    return _skills_from_records(records, str(path), first_row=2, label="row")


def _skills_from_records(records: Any, source: str, first_row: int = 1, label: str = "entry") -> list[Skill]:
    if not isinstance(records, list):
        raise CatalogError(f"{source}: 'skills' must be a list")
    skills: list[Skill] = []
    seen: dict[str, str] = {}
    for number, record in enumerate(records, start=first_row):
        if record is None:
            continue
        where = f"{source} {label} {number}"
        if not isinstance(record, dict):
            raise CatalogError(f"{where}: expected a mapping with name, category, definition, example")
        values = {k: ("" if v is None else str(v)).strip() for k, v in record.items()}
        name = values.get("name") or values.get("skill") or ""
        if not name:
            raise CatalogError(f"{where}: empty skill name")
        for needed in ("category", "definition", "example"):
            if not values.get(needed):
                raise CatalogError(f"{where}: skill {name!r} has an empty {needed}")
        key = " ".join(name.lower().split())
        if key in seen:
            raise CatalogError(f"{where}: duplicate skill {name!r} (first at {seen[key]})")
        seen[key] = where
        skills.append(
            Skill(
                name=" ".join(name.split()),
                category=normalize_category(values["category"]),
                definition=values["definition"],
                example=values["example"],
                row=where,
            )
        )
    if not skills:
        raise CatalogError(f"{source}: the catalog has no skills")
    return skills


def _topics_from_list(items: Any, source: str, first_row: int = 1) -> tuple[str, ...]:
    if not isinstance(items, list):
        raise CatalogError(f"{source}: 'topics' must be a list of names")
    topics: list[str] = []
    seen: dict[str, int] = {}
    for number, item in enumerate(items, start=first_row):
        topic = " ".join(str(item if item is not None else "").split())
        if not topic:
            raise CatalogError(f"{source} topic {number}: empty topic")
        if topic.lower() in seen:
            raise CatalogError(
                f"{source} topic {number}: duplicate topic {topic!r} (first at {seen[topic.lower()]})"
            )
        seen[topic.lower()] = number
        topics.append(topic)
    if not topics:
        raise CatalogError(f"{source}: no topics")
    return tuple(topics)
