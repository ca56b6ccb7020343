"""The leakage audit of a release: the training data must not reveal what the held-out evaluation tests.

Checks (each failing check names the offending rows):

1. ``heldout_skill_in_composition``: no k >= 2 training row uses a held-out skill (held-out skills may
   appear only alone, in D_SKILL-MIX(1));
2. ``heldout_topic_in_training``: no training row (any k) is on a held-out topic;
3. ``heldout_combination_in_training``: no combination of the held-out evaluation set (same skills, same
   topic) is in the training data;
4. ``heldout_skill_named``: no training answer writes out the name of a held-out skill.

Counted, not failing: training answers that nearly duplicate an evaluation prompt (a shared run of
``n`` words, default 8, after lower-casing and dropping punctuation), e.g. a copied skill example.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from skillmix.sampling import combination_key
from skillmix.splits import Split
from skillmix.text import named_skills

_WORD = re.compile(r"[a-z0-9']+")


@dataclass
class Check:
    name: str
    description: str
    violations: list[str] = field(default_factory=list)  # row ids, with a short reason

    @property
    def passed(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "passed": self.passed,
            "violations": self.violations,
        }


@dataclass
class AuditReport:
    checks: list[Check]
    near_duplicates: int
    near_duplicate_examples: list[dict[str, str]]
    ngram: int
    training_rows: int
    evaluation_prompts: int

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> str:
        """One line per failed check, naming up to five rows."""
        lines = []
        for check in self.checks:
            if not check.passed:
                shown = ", ".join(check.violations[:5])
                more = f" (+{len(check.violations) - 5} more)" if len(check.violations) > 5 else ""
                lines.append(f"{check.name}: {len(check.violations)} row(s): {shown}{more}")
        return "; ".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "near_duplicates": {
                "count": self.near_duplicates,
                "ngram": self.ngram,
                "examples": self.near_duplicate_examples,
            },
            "training_rows": self.training_rows,
            "evaluation_prompts": self.evaluation_prompts,
        }


def ngrams(text: str | None, n: int) -> set[tuple[str, ...]]:
    words = _WORD.findall((text or "").lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def audit(
    training_rows: Sequence[dict[str, Any]],
    evaluation_rows: Sequence[dict[str, Any]],
    split: Split,
    ngram: int = 8,
) -> AuditReport:
    """Audit training rows (``id, k, skills, topic, answer``) against evaluation rows (``id, setting, k,
    skills, topic, prompt``) under ``split``."""
    duplicates, examples = _near_duplicates(training_rows, evaluation_rows, ngram)
    return AuditReport(
        checks=_leakage_checks(training_rows, evaluation_rows, split),
        near_duplicates=duplicates,
        near_duplicate_examples=examples,
        ngram=ngram,
        training_rows=len(training_rows),
        evaluation_prompts=len(evaluation_rows),
    )


def _leakage_checks(
    training_rows: Sequence[dict[str, Any]], evaluation_rows: Sequence[dict[str, Any]], split: Split
) -> list[Check]:
    """The four checks that stop a release, each with the training rows that violate it."""
    heldout_skills = {s.name for s in split.heldout_skills}
    heldout_topics = set(split.heldout_topics)
    composition = Check("heldout_skill_in_composition", "k >= 2 training rows use only training skills")
    topics = Check("heldout_topic_in_training", "training rows are on training topics only")
    combos = Check("heldout_combination_in_training", "no held-out evaluation combination is trained on")
    named = Check("heldout_skill_named", "no training answer names a held-out skill")
    heldout_keys = {
        combination_key(r["skills"], r["topic"]): r["id"]
        for r in evaluation_rows
        if r.get("setting") == "held-out"
    }
    for row in training_rows:
        rid = str(row["id"])
        leaked = sorted(set(row["skills"]) & heldout_skills)
        if row["k"] >= 2 and leaked:
            composition.violations.append(f"{rid} ({', '.join(leaked)})")
        if row["topic"] in heldout_topics:
            topics.violations.append(f"{rid} ({row['topic']})")
        key = combination_key(row["skills"], row["topic"])
        if key in heldout_keys:
            combos.violations.append(f"{rid} (= {heldout_keys[key]})")
        names = sorted(set(named_skills(row.get("answer"), sorted(heldout_skills))))
        if names:
            named.violations.append(f"{rid} ({', '.join(names)})")
    return [composition, topics, combos, named]


def _near_duplicates(
    training_rows: Sequence[dict[str, Any]], evaluation_rows: Sequence[dict[str, Any]], ngram: int
) -> tuple[int, list[dict[str, str]]]:
    """Training answers sharing an ``ngram``-word run with an evaluation prompt: the count, 5 examples."""
    index: dict[tuple[str, ...], str] = {}
    for row in evaluation_rows:
        for gram in ngrams(row.get("prompt"), ngram):
            index.setdefault(gram, row["id"])
    duplicates, examples = 0, []
    for row in training_rows:
        hit = next((index[g] for g in ngrams(row.get("answer"), ngram) if g in index), None)
        if hit is not None:
            duplicates += 1
            if len(examples) < 5:
                examples.append({"training_id": str(row["id"]), "evaluation_id": str(hit)})
    return duplicates, examples
