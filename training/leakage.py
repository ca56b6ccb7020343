"""The release's leakage audit, re-checked on the rows a run is about to train on.

A dataset that passed its release audit can still leak once a recipe mixes, subsamples or edits it, and a
local folder was never audited at all. Before anything is trained, every dataset of the recipe is audited
with :func:`skillmix.release.audit.audit` under its own catalog and split, against the evaluation prompts
rebuilt with :func:`skillmix.release.evalsets.build_eval_sets` (same size and seed as its release). The run
stops, naming the rows, if a k >= 2 training row uses a held-out skill, a training row is on a held-out
topic or names a held-out skill, or a training row's combination (skills and topic) is in the chosen
evaluation set (``data.evaluation.settings``; the held-out set is always checked). A preference pair is
audited as its two texts: the chosen and the rejected one, each with the pair's skills and topic.
"""

from __future__ import annotations

from typing import Any

from skillmix.catalog import CatalogError, load_catalog
from skillmix.release.audit import AuditReport, Check, audit
from skillmix.release.evalsets import EVAL_KS, build_eval_sets, eval_config_name
from skillmix.sampling import SamplingError, combination_key
from skillmix.splits import Split
from skillmix.text import extract_answer
from skillmix.training.config import EvaluationSet
from skillmix.training.data import LoadedSource

DEFAULT_EVAL_N = 100


class LeakageError(ValueError):
    """The training rows reveal what an evaluation set tests; the message names the rows."""


def check_leakage(sources: list[LoadedSource], evaluation: EvaluationSet) -> list[dict[str, Any]]:
    """Audit every dataset; raise :class:`LeakageError` on the first that fails. Returns the reports."""
    reports = []
    for item in sources:
        split, catalog = _split_of(item)
        eval_rows = _eval_rows(item, catalog, split, evaluation)
        training = [audited for rows in item.rows.values() for row in rows for audited in _audited(row)]
        report = audit(training, eval_rows, split)
        extra = [s for s in evaluation.settings if s != "held-out"]  # held-out: the audit's own check
        if extra:
            report.checks.append(_combination_check(training, eval_rows, extra))
        if not report.passed:
            raise LeakageError(
                f"leakage re-check of {item.source.path} failed, nothing was trained: {report.failures()}"
            )
        reports.append(_summary(item, report, evaluation))
    return reports


def _audited(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows the audit reads for a training row: itself, or a pair's chosen and rejected texts (each with
    the pair's skills and topic, and as its answer the text after ``Answer:`` of its last reply)."""
    if "chosen" not in row:
        return [row]
    return [
        {**row, "id": f"{row['id']} ({side})", "answer": extract_answer(row[side][-1]["content"])}
        for side in ("chosen", "rejected")
    ]


def _split_of(item: LoadedSource) -> tuple[Split, Any]:
    """The catalog and split the dataset was built with; a changed catalog is refused."""
    build = item.manifest.get("config") or {}
    where = f"dataset {item.source.path}"
    try:
        catalog = load_catalog(build.get("catalog", "builtin"), topics=build.get("topics"))
    except CatalogError as exc:
        raise LeakageError(f"{where}: cannot load the catalog it was built with: {exc}") from None
    split = catalog.split(build.get("split_seed", 0))
    recorded = (item.manifest.get("split") or {}).get("hash")
    if recorded and split.hash != recorded:
        raise LeakageError(f"{where}: the catalog no longer gives the split it was built with (hash differs)")
    return split, catalog


def _eval_rows(item: LoadedSource, catalog: Any, split: Split, evaluation: EvaluationSet) -> list[dict]:
    release = item.manifest.get("release") or {}
    n = evaluation.n or release.get("eval_n_per_k") or DEFAULT_EVAL_N
    seed = (
        evaluation.seed
        if evaluation.seed is not None
        else (item.manifest.get("seeds") or {}).get("sampling", 0)
    )
    settings = sorted({*evaluation.settings, "held-out"})
    ks = evaluation.k or list(EVAL_KS)
    try:  # exactly the sets the evaluation asks: drawn from what the dataset did not draw
        sets = build_eval_sets(catalog, split, n=n, ks=ks, seed=seed, settings=settings, exclude=item.drawn)
    except SamplingError as exc:
        raise LeakageError(
            f"dataset {item.source.path}: the evaluation sets cannot be drawn: {exc}"
        ) from None
    return [row for rows in sets.values() for row in rows]


def _combination_check(training: list[dict], eval_rows: list[dict], settings: list[str]) -> Check:
    """No training row has the skills and topic of a prompt of the evaluation sets of ``settings``."""
    names = ", ".join(eval_config_name(s) for s in settings)
    check = Check("evaluation_combination_in_training", f"no combination of {names} is trained on")
    chosen = {
        combination_key(r["skills"], r["topic"]): r["id"] for r in eval_rows if r["setting"] in settings
    }
    for row in training:
        hit = chosen.get(combination_key(row["skills"], row["topic"]))
        if hit is not None:
            check.violations.append(f"{row['id']} (= {hit})")
    return check


def _summary(item: LoadedSource, report: AuditReport, evaluation: EvaluationSet) -> dict[str, Any]:
    return {
        "dataset": item.source.path,
        "passed": report.passed,
        "checks": [check.name for check in report.checks],
        "training_rows": report.training_rows,
        "evaluation_prompts": report.evaluation_prompts,
        "evaluation_sets": [eval_config_name(s) for s in evaluation.settings],
        "near_duplicates": report.near_duplicates,
    }


def check_prompts(
    item: LoadedSource, prompts: list[dict[str, Any]], evaluation: EvaluationSet
) -> dict[str, Any]:
    """The audit of the prompts an RL run writes from ``item``'s combinations (rows ``id, k, skills,
    topic``), stricter than a dataset's: besides the audit's checks and the chosen evaluation sets, no
    prompt of any k shows a held-out skill. Raises :class:`LeakageError`; returns the summary."""
    split, catalog = _split_of(item)
    eval_rows = _eval_rows(item, catalog, split, evaluation)
    report = audit(prompts, eval_rows, split)
    heldout = {skill.name for skill in split.heldout_skills}
    check = Check("heldout_skill_in_prompt", "no prompt shows a held-out skill, whatever its k")
    for row in prompts:
        leaked = sorted(set(row["skills"]) & heldout)
        if leaked:
            check.violations.append(f"{row['id']} ({', '.join(leaked)})")
    report.checks.append(check)
    extra = [s for s in evaluation.settings if s != "held-out"]
    if extra:
        report.checks.append(_combination_check(prompts, eval_rows, extra))
    if not report.passed:
        raise LeakageError(
            f"leakage audit of the prompts from {item.source.path} failed, nothing was trained: "
            f"{report.failures()}"
        )
    return _summary(item, report, evaluation)


def split_of(item: LoadedSource) -> tuple[Split, Any]:
    """The split and catalog ``item`` was built with (its recorded split hash checked)."""
    return _split_of(item)
