"""The reviewed dataset folder: human decisions override the judge's, in a new folder written whole.

A reviewed row (one with a human decision, :mod:`skillmix.review.decide`) gets the humans' points as its
``points`` (with ``full_marks``, ``all_skills``, ``skill_fraction``, ``failed_points`` and ``outcome``
recomputed) and a ``review`` struct: ``decided_by`` (``human``), ``annotators``, ``human_points`` (the
annotators' combined answers, before the text checks), ``judge_points`` (the judge's decided points),
``judge_shown`` (whether the annotators saw the judge's answers pre-filled) and ``reason``. With full
marks it belongs to its k config (a kept row stays, a rejected one moves there); without, to
``rejected``. Other rows are copied as they are (``review`` null).

The folder is written as ``skillmix dataset`` writes one: one Parquet file per non-empty config with the
dataset schema (:func:`skillmix.dataset_folder.schema.write_configs`), ``manifest.json`` and the card
(:func:`skillmix.pipelines.card.render_folder_card`); everything is written to a staging folder beside the
target, which is renamed into place at the end, so a failure leaves no half-written folder.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

from skillmix.dataset_folder.layout import CONFIG_NAMES, DatasetFolder, k_configs
from skillmix.dataset_folder.preference import preference_pairs
from skillmix.grading import rubric_items
from skillmix.metrics import metric_values
from skillmix.review.decide import Decision


def reviewed_row(row: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """The row with the humans' decision in place of the judge's (see the module docstring)."""
    assert decision.decided is not None
    k, decided = decision.k, decision.decided
    full, all_skills, fraction = (float(v) for v in metric_values(decided, k))
    missed = [
        label for label, p in zip(rubric_items(row["skills"], row["topic"]), decided, strict=True) if p != 1
    ]
    reason = _reason(len(decision.annotations), missed, list(row.get("failed_points") or []))
    return {
        **row,
        "points": [int(p) for p in decided],
        "full_marks": full,
        "all_skills": all_skills,
        "skill_fraction": fraction,
        "failed_points": missed,
        "outcome": "kept" if full == 1.0 else "rejected",
        "review": {
            "decided_by": "human",
            "annotators": len(decision.annotations),
            "human_points": [int(p) for p in decision.human],
            "judge_points": [int(p) for p in row["points"]],
            "judge_shown": decision.shown,
            "reason": reason,
        },
    }


def _reason(annotators: int, missed: list[str], judge_missed: list[str]) -> str:
    people = f"human review ({annotators} annotator{'s' if annotators > 1 else ''})"
    if not missed:
        judge = f"; the judge had missed {', '.join(judge_missed)}" if judge_missed else ", as the judge"
        return f"{people}: full marks{judge}"
    return f"{people}: missed {', '.join(missed)}" + (", as the judge" if missed == judge_missed else "")


def apply_decisions(
    folder: DatasetFolder, decisions: dict[str, Decision]
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """The configs with the decisions applied, and the rows moved ``{id, k, from, to, reason}``."""
    configs: dict[str, list[dict[str, Any]]] = {name: [] for name in folder.configs}
    moved = []
    for name, rows in folder.configs.items():
        for row in rows if name != "preference" else ():  # pairs are made again from the decided rows
            decision = decisions.get(str(row["id"]))
            if decision is None or decision.decided is None or name == "failed":
                configs[name].append(row)
                continue
            new = reviewed_row(row, decision)
            kept = new["outcome"] == "kept"
            target = name if (name != "rejected") == kept else (f"k{new['k']}" if kept else "rejected")
            configs.setdefault(target, []).append(new)
            if target != name:
                moved.append(
                    {
                        "id": str(row["id"]),
                        "k": int(row["k"]),
                        "from": name,
                        "to": target,
                        "reason": new["review"]["reason"],
                    }
                )
    if "preference" in configs:
        pairing = str(folder.manifest["config"].get("pairing") or "widest")
        configs["preference"] = preference_pairs(
            [row for name, rows in configs.items() if name != "preference" for row in rows], pairing
        )
    return configs, moved


def ordered(configs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Config names as ``skillmix dataset`` writes them: k1, k2, ..., surplus, rejected, failed."""
    return [*k_configs(configs), *(n for n in CONFIG_NAMES if n in configs)]


def counts(manifest: dict[str, Any], configs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The manifest's ``counts`` with kept, rejected and acceptance per k as the configs now hold them."""
    out = copy.deepcopy(manifest.get("counts") or {})
    for name, c in (out.get("per_k") or {}).items():
        k = int(name[1:])
        kept = len(configs.get(name, []))
        rejected = sum(int(r["k"]) == k for r in configs.get("rejected", []))
        surplus = sum(int(r["k"]) == k for r in configs.get("surplus", []))
        graded = kept + surplus + rejected
        c.update(
            kept=kept,
            rejected=rejected,
            acceptance_rate=round((kept + surplus) / graded, 4) if graded else 0.0,
        )
    return out


def write_folder(
    out: Path, manifest: dict[str, Any], configs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Write ``configs`` (empty ones left out), the manifest and the card into the new folder ``out``;
    returns the manifest written."""
    from skillmix.dataset_folder.schema import write_configs
    from skillmix.dataset_folder.writer import write_manifest_and_card

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.skillmix-staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        written = write_configs(staging, {name: configs[name] for name in ordered(configs)})
        manifest = {**manifest, "configs": written, "counts": counts(manifest, configs)}
        write_manifest_and_card(staging, manifest)
        os.replace(staging, out)  # `out` is absent or an empty folder, which rename replaces
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
