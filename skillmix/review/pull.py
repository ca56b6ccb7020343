"""``skillmix review pull``: the submitted answers of an Argilla review, the agreement figures, and a new
dataset folder in which the human decisions override the judge's.

Only ``submitted`` responses count (drafts and discarded records do not), and never those of
``skillmix-judge``, the user that stands for the judge (:mod:`skillmix.review.push`). A record whose
metadata says the judge's answers were shown (``judge_shown`` = ``yes``; and every record of a dataset
pushed before that metadata existed, which showed them all) is decided like the others but never enters the
agreement figures. How answers become
decisions and figures is :mod:`skillmix.review.decide`; the new folder is :mod:`skillmix.review.reviewed`.
``--out`` must be a new (or empty) folder, never the input; everything is checked, fetched and computed
before it is written, and it is written whole or not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skillmix.dataset_folder.layout import read_dataset_folder
from skillmix.review.connect import ReviewError, argilla_errors, connect
from skillmix.review.decide import RULE, Annotation, Decision, decide, figures
from skillmix.review.push import DEFAULT_WORKSPACE, JUDGE_USER
from skillmix.review.records import SHOWN
from skillmix.review.reviewed import apply_decisions, write_folder
from skillmix.review.sample import stratum
from skillmix.rules import ScoringRules


@dataclass
class PullResult:
    out: Path
    review: dict[str, Any]
    configs: dict[str, int]


def check_out(data: Path, out: Path) -> None:
    """``out`` must be new or empty, and neither the input folder nor inside it."""
    source, target = data.resolve(), out.resolve()
    if target == source or source in target.parents:
        where = "is" if target == source else "is inside"
        raise ReviewError(f"--out {out} {where} the input folder: give a new folder, outside it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ReviewError(f"--out {out} exists and is not empty: give a new folder")


def fetch_annotations(
    client: Any, name: str, workspace: str
) -> tuple[dict[str, list[Annotation]], int, set[str]]:
    """``{record id: the human annotators' submitted answers}``, the number of records, and the ids of the
    records that showed the judge's answers."""
    space = client.workspaces(workspace)
    dataset = client.datasets(name, workspace=space) if space is not None else None
    if dataset is None:
        raise ReviewError(f"no Argilla dataset {name} in workspace {workspace} (push it first)")
    judge = client.users(JUDGE_USER)
    users: dict[Any, str] = {}
    annotations: dict[str, list[Annotation]] = {}
    records, shown = 0, set()
    for record in dataset.records(with_suggestions=False, with_responses=True):
        records += 1
        if str((record.metadata or {}).get(SHOWN, "yes")) != "no":
            shown.add(str(record.id))
        by_user: dict[Any, Annotation] = {}
        for response in record.responses:
            if str(getattr(response.status, "value", response.status)) != "submitted":
                continue
            if judge is not None and response.user_id == judge.id:
                continue
            if response.user_id not in users:
                user = client.users(id=response.user_id)
                users[response.user_id] = user.username if user is not None else str(response.user_id)
            note = by_user.setdefault(response.user_id, Annotation(users[response.user_id]))
            if response.question_name == "comment":
                note.comment = str(response.value)
            else:
                note.answers[response.question_name] = str(response.value)
        if by_user:
            annotations[str(record.id)] = list(by_user.values())
    return annotations, records, shown


def pull(
    data: str | Path,
    dataset: str,
    out: str | Path,
    workspace: str = DEFAULT_WORKSPACE,
    seed: int = 0,
    n_boot: int = 1000,
    env: Mapping[str, str] | None = None,
) -> PullResult:
    """Fetch the review of ``data`` from ``dataset`` and write the reviewed folder ``out`` (module doc)."""
    data, out = Path(data), Path(out)
    check_out(data, out)
    folder = read_dataset_folder(data)
    client = connect(env)
    with argilla_errors(client.api_url, f"reading dataset {dataset}"):
        annotations, records, shown = fetch_annotations(client, dataset, workspace)
    if not annotations:
        raise ReviewError(f"Argilla dataset {dataset} has no submitted responses yet: annotate, then pull")
    graded = {str(row["id"]): row for row in folder.graded()}
    unknown = sorted(set(annotations) - set(graded))
    if unknown:
        shown = ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")
        raise ReviewError(
            f"Argilla dataset {dataset} holds records that are not graded rows of {data} ({shown}): "
            "was it pushed from another folder?"
        )
    rules = ScoringRules.from_config(folder.manifest["config"], f"{data}: manifest config")
    decisions = {
        rid: decide(graded[rid], notes, rules, shown=rid in shown)
        for rid, notes in sorted(annotations.items())
    }
    configs, moved = apply_decisions(folder, decisions)
    population: dict[Any, int] = {}
    for row in graded.values():
        population[stratum(row)] = population.get(stratum(row), 0) + 1
    review = review_section(
        dataset, workspace, records, list(decisions.values()), moved, rules, population, seed, n_boot
    )
    manifest = write_folder(out, {**folder.manifest, "review": review}, configs)
    return PullResult(out, review, {name: info["rows"] for name, info in manifest["configs"].items()})


def _changed(decision: Decision) -> bool:
    """Whether the humans' decided points differ from the judge's."""
    decided = [] if decision.decided is None else [int(p) for p in decision.decided]
    return decided != [int(p) for p in decision.row["points"]]


def review_section(
    dataset: str,
    workspace: str,
    records: int,
    decisions: list[Decision],
    moved: list[dict[str, Any]],
    rules: ScoringRules,
    population: Mapping[Any, int],
    seed: int,
    n_boot: int,
) -> dict[str, Any]:
    """The manifest's ``review``: where, how many, the rows moved, the rule, the mode, the weighting and
    the agreement figures (of the blind records only)."""
    decided = [d for d in decisions if d.decided is not None]
    blind = [d for d in decided if not d.shown]
    shown = [d for d in decided if d.shown]
    to_kept = sum(m["to"] != "rejected" for m in moved)
    return {
        "dataset": dataset,
        "workspace": workspace,
        "rule": RULE,
        "mode": "blind" if not shown else ("shown" if not blind else "mixed"),
        "counts": {
            "records": records,
            "reviewed": len(decided),
            "blind": len(blind),
            "shown": len(shown),
            "two_annotators": sum(len(d.annotations) >= 2 for d in blind),
            "incomplete": len(decisions) - len(decided),
            "to_kept": to_kept,
            "to_rejected": len(moved) - to_kept,
            "unchanged": len(decided) - len(moved),
        },
        "shown": {"reviewed": len(shown), "changed": sum(_changed(d) for d in shown)},
        "weighting": {
            "population": "the folder's graded rows by stratum (k, outcome, items missed)",
            "strata": {"/".join(str(p) for p in s): rows for s, rows in sorted(population.items())},
            "bootstrap": f"{n_boot} resamples of the records (each keeping its weight), seed {seed}",
        },
        "moved": moved,
        "agreement": figures(decided, rules, population, n_boot=n_boot, seed=seed),
    }
