"""``skillmix review push``: a stratified sample of a dataset folder's graded rows, as an Argilla dataset.

**Blind by default**: the records carry nothing of the judge's verdict (:mod:`skillmix.review.records`), so
that the answers measure the judge. ``--show-judge SHARE`` pre-fills the judge's answers on that share of
the sample (drawn with the seed; a fast correction pass): those records are marked ``judge_shown = yes``,
get no second annotator, and ``review pull`` decides them like the others but never counts them in the
agreement figures. The guidelines say which mode the dataset is in.

The sample is :func:`skillmix.review.sample.stratified_sample` (by k, outcome and the kinds of rubric item
missed; seeded); the records and settings are :mod:`skillmix.review.records`. Records are keyed by the row
id: a row already in the dataset is left as it is (its responses too), so pushing the same rows again adds
nothing. A dataset of that name whose settings differ (other questions, fields, metadata or distribution)
is refused, naming it.

**Two annotators on a share of the records.** Argilla 2.8 distributes work per dataset only: a record is
``completed``, and leaves every annotator's queue, once it has ``TaskDistribution.min_submitted``
submitted responses; nothing is set per record (argilla-server's ``_update_record_status`` compares the
record's submitted responses with the dataset's ``min_submitted``). So, in one dataset:

* the dataset gets ``min_submitted = 2`` when some records are to have two annotators (1 when none, or
  when all of them are: ``--two-annotators 0`` or ``1``);
* each record meant for **one** annotator is logged with the judge's decided points already submitted as
  the response of an Argilla user that stands for the judge, ``skillmix-judge`` (an annotator of the
  workspace, with a random password nobody is given), so one human submission completes it;
* each record meant for **two** annotators has no such response and stays in the queues until two humans
  have submitted it. ``review pull`` never counts ``skillmix-judge``'s responses as human ones.

Rejected alternatives: ``min_submitted = 2`` for every record (everything reviewed twice); the overlap
share in a second dataset (two queues, two sets of settings, agreement split across datasets); the share
logged twice as two records (one annotator can take both copies, which measures nothing).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.dataset_folder.layout import read_dataset_folder
from skillmix.review.connect import ReviewError, argilla_errors, connect, dataset_url, sdk
from skillmix.review.records import build_record, build_settings, render_guidelines, signature
from skillmix.review.sample import shown_ids, strata_counts, stratified_sample, two_annotator_ids
from skillmix.rules import ScoringRules

JUDGE_USER = "skillmix-judge"
DEFAULT_WORKSPACE = "skillmix"


@dataclass
class PushResult:
    dataset: str
    workspace: str
    url: str
    sampled: int
    added: int
    already: int
    two_annotators: int
    min_submitted: int
    shown: int = 0
    mode: str = "blind"
    strata: dict[str, int] = field(default_factory=dict)


def push(
    data: str | Path,
    dataset: str,
    workspace: str = DEFAULT_WORKSPACE,
    n: int = 100,
    seed: int = 0,
    two_annotators: float = 0.2,
    show_judge: float = 0.0,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> PushResult:
    """Send a sample of ``data``'s graded rows to the Argilla dataset ``dataset`` (module docstring)."""
    if n < 1:
        raise ReviewError(f"--n must be at least 1, got {n}")
    folder = read_dataset_folder(data)
    sample = stratified_sample(folder.graded(), n, seed)
    if not sample:
        raise ReviewError(f"{folder.path} has no graded (kept or rejected) rows to review")
    ids = [str(row["id"]) for row in sample]
    try:
        shown = shown_ids(ids, show_judge, seed)
        overlap = two_annotator_ids(ids, two_annotators, seed, exclude=shown)
    except ConfigError as exc:
        raise ReviewError(str(exc)) from None
    ks = sorted({int(row["k"]) for row in sample})
    min_submitted = 2 if overlap else 1
    mode = "shown" if shown else "blind"
    catalog = folder.catalog()
    rules = ScoringRules.from_config(folder.manifest["config"], f"{data}: manifest config")
    guidelines = render_guidelines(ks, folder.judge, rules, mode)
    client = connect(env)
    rg = sdk()
    with argilla_errors(client.api_url, f"pushing to dataset {dataset}"):
        space = _workspace(rg, client, workspace)
        settings = build_settings(rg, ks, min_submitted, guidelines, mode)
        target = _dataset(rg, client, dataset, space, settings)
        judge_user = _judge_user(rg, client, space) if 0 < len(overlap) < len(sample) else None
        existing = {record.id for record in target.records(with_suggestions=False, with_responses=False)}
        records = [
            _record(
                rg, row, catalog, folder.judge, str(row["id"]) in overlap, str(row["id"]) in shown, judge_user
            )
            for row in sample
            if str(row["id"]) not in existing
        ]
        if records:
            log(f"Sending {len(records)} records to {dataset} ...")
            with _quiet_sdk():
                target.records.log(records)
    already = sum(str(row["id"]) in existing for row in sample)
    return PushResult(
        dataset,
        workspace,
        dataset_url(client, target),
        len(sample),
        len(records),
        already,
        len(overlap),
        min_submitted,
        len(shown),
        mode,
        strata_counts(sample),
    )


def _record(
    rg: Any, row: dict[str, Any], catalog: Any, agent: str, double: bool, shown: bool, judge_user: Any
) -> Any:
    """A row's record; one meant for a single annotator is completed by ``judge_user``'s placeholder."""
    judge = None if double or judge_user is None else judge_user.id
    return build_record(rg, row, catalog, agent, 2 if double else 1, shown, judge)


def _workspace(rg: Any, client: Any, name: str) -> Any:
    return client.workspaces(name) or rg.Workspace(name=name, client=client).create()


def _dataset(rg: Any, client: Any, name: str, space: Any, settings: Any) -> Any:
    """The dataset ``name`` of the workspace: created with ``settings``, or found with the same ones."""
    found = client.datasets(name, workspace=space)
    if found is None:
        return rg.Dataset(name=name, workspace=space, settings=settings, client=client).create()
    have, want = signature(found.settings), signature(settings)
    if have != want:
        what = next(key for key in want if have.get(key) != want[key])
        raise ReviewError(
            f"Argilla dataset {name} (workspace {space.name}) exists with other settings ({what}: "
            f"{_show(have[what])}, this push needs {_show(want[what])}); choose another --dataset"
        )
    return found


def _show(value: Any) -> str:
    """A setting for the error message: questions as their names (``?`` marks an optional one)."""
    if isinstance(value, list):
        return ", ".join(f"{v[0]}{'' if v[3] else '?'}" if isinstance(v, tuple) else str(v) for v in value)
    return str(value)


def _judge_user(rg: Any, client: Any, space: Any) -> Any:
    """The user that stands for the judge: made once, an annotator of the workspace."""
    user = client.users(JUDGE_USER)
    if user is None:
        user = rg.User(
            username=JUDGE_USER,
            password=secrets.token_urlsafe(24),
            role="annotator",
            first_name="Skill-Mix judge",
            client=client,
        ).create()
    if JUDGE_USER not in {member.username for member in space.users}:
        space.add_user(user)
    return user


@contextlib.contextmanager
def _quiet_sdk() -> Iterator[None]:
    """Only our lines on the terminal: the SDK's own progress bar while records are sent is switched off
    (it lives in a private module; if that moves, the bar simply shows)."""
    import functools

    try:
        from argilla.records import _dataset_records as module
    except ImportError:
        yield
        return
    bar = getattr(module, "tqdm", None)
    if bar is None:
        yield
        return
    module.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        module.tqdm = bar
