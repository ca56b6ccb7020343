"""The ``preference`` config: pairs of graded texts of one combination (its declared schema is
:data:`skillmix.dataset_folder.schema.PREFERENCE_SCHEMA`).

A build with several generations per combination (``skillmix dataset --generations G``) grades every text,
so a combination can have a full-mark text and one that missed a point. Each such combination gives pairs
in TRL's conversational preference format (``load_dataset(repo, "preference")`` is what ``DPOTrainer``
reads): ``prompt`` (the messages before the first answer: the round-1 request), ``chosen`` and ``rejected``
(the rest of each conversation: the round-1 answer, the round-2 request, the round-2 answer).

* **chosen**: a full-mark text (outcome ``kept``, whether in its k config or in ``surplus``);
* **rejected**: a graded text of the same combination that missed a point (outcome ``rejected``); a
  ``failed`` row has no points and never pairs;
* **pairing** (``--pairing``): ``widest`` (the default) gives one pair per combination, the full-mark text
  of the lowest generation against the rejected text with the fewest points (ties: the lowest generation);
  ``all`` gives every full-mark x rejected pair of the combination.

``margin`` is the chosen text's points minus the rejected one's (of the k + 3 rubric items, after the
text checks), always >= 1. The rows also keep both ids and both point lists, so a pair can be traced to
its graded rows in the other configs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from skillmix.dataset_folder.layout import combination_of, generation_of

PAIRINGS = ("widest", "all")


def preference_pairs(rows: Iterable[Mapping[str, Any]], pairing: str = "widest") -> list[dict[str, Any]]:
    """The preference rows of graded ``rows`` (any configs' rows: only kept and rejected ones pair), in the
    order their combinations first appear; see the module docstring for the rule."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing is one of {', '.join(PAIRINGS)}, not {pairing!r}")
    by_combination: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(
        lambda: {"kept": [], "rejected": []}
    )
    for row in rows:
        if row.get("outcome") in ("kept", "rejected") and row.get("points"):
            by_combination[combination_of(row)][row["outcome"]].append(row)
    pairs = []
    for texts in by_combination.values():
        chosen = sorted(texts["kept"], key=generation_of)
        rejected = sorted(texts["rejected"], key=lambda r: (sum(r["points"]), generation_of(r)))
        if not chosen or not rejected:
            continue
        matched = [(chosen[0], rejected[0])] if pairing == "widest" else _every(chosen, rejected)
        pairs.extend(_pair(good, bad, pairing) for good, bad in matched)
    return pairs


def _every(chosen: list[Mapping[str, Any]], rejected: list[Mapping[str, Any]]) -> list[tuple[Any, Any]]:
    return [(good, bad) for good in chosen for bad in sorted(rejected, key=generation_of)]


def _pair(good: Mapping[str, Any], bad: Mapping[str, Any], pairing: str) -> dict[str, Any]:
    prompt, chosen = split_conversation(good.get("conversation") or [])
    _, rejected = split_conversation(bad.get("conversation") or [])
    return {
        "id": f"{good['id']}>{bad['id']}",
        "combination": combination_of(good),
        **{key: good.get(key) for key in ("k", "setting", "skills", "categories", "topic")},
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "chosen_id": good["id"],
        "rejected_id": bad["id"],
        "chosen_points": list(good["points"]),
        "rejected_points": list(bad["points"]),
        "margin": sum(good["points"]) - sum(bad["points"]),
        "pairing": pairing,
        "teacher": good.get("teacher"),
        "judge": good.get("judge"),
    }


def split_conversation(
    messages: list[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A conversation as (the messages before the first assistant answer, the rest)."""
    turns = [{"role": m["role"], "content": m["content"]} for m in messages]
    first = next((i for i, m in enumerate(turns) if m["role"] == "assistant"), len(turns))
    return turns[:first], turns[first:]
