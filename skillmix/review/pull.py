"""``skillmix review pull``: the submitted answers of an Argilla review, the agreement figures, and a new
dataset folder in which the human decisions override the judge's.

Only ``submitted`` responses count (drafts and discarded records do not), and never those of
``skillmix-judge``, the user that stands for the judge (:mod:`skillmix.review.push`). How answers become
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
from skillmix.review.reviewed import apply_decisions, write_folder


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


def fetch_annotations(client: Any, name: str, workspace: str) -> tuple[dict[str, list[Annotation]], int]:
    """``{record id: the human annotators' submitted answers}`` and the number of records."""
    space = client.workspaces(workspace)
    dataset = client.datasets(name, workspace=space) if space is not None else None
    if dataset is None:
        raise ReviewError(f"no Argilla dataset {name} in workspace {workspace} (push it first)")
    judge = client.users(JUDGE_USER)
    users: dict[Any, str] = {}
    annotations: dict[str, list[Annotation]] = {}
    records = 0
    for record in dataset.records(with_suggestions=False, with_responses=True):
        records += 1
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
    return annotations, records


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
        annotations, records = fetch_annotations(client, dataset, workspace)
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
    config = folder.manifest["config"]
    decisions = {rid: decide(graded[rid], notes, config) for rid, notes in sorted(annotations.items())}
    configs, moved = apply_decisions(folder, decisions)
    review = review_section(
        dataset, workspace, records, list(decisions.values()), moved, config, seed, n_boot
    )
    manifest = write_folder(out, {**folder.manifest, "review": review}, configs)
    return PullResult(out, review, {name: info["rows"] for name, info in manifest["configs"].items()})


def review_section(
    dataset: str,
    workspace: str,
    records: int,
    decisions: list[Decision],
    moved: list[dict[str, Any]],
    config: Mapping[str, Any],
    seed: int,
    n_boot: int,
) -> dict[str, Any]:
    """The manifest's ``review``: where, how many, the rows moved, the rule and the agreement figures."""
    decided = [d for d in decisions if d.decided is not None]
    to_kept = sum(m["to"] != "rejected" for m in moved)
    return {
        "dataset": dataset,
        "workspace": workspace,
        "rule": RULE,
        "counts": {
            "records": records,
            "reviewed": len(decided),
            "two_annotators": sum(len(d.annotations) >= 2 for d in decided),
            "incomplete": len(decisions) - len(decided),
            "to_kept": to_kept,
            "to_rejected": len(moved) - to_kept,
            "unchanged": len(decided) - len(moved),
        },
        "moved": moved,
        "agreement": figures(decided, config, n_boot=n_boot, seed=seed),
    }
