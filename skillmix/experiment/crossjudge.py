"""The second judge in the report: how well it agrees with the first, and whether a verdict depends on
which of them graded.

Each evaluation's ``cross-judge/<student>--<run>/`` folder (:mod:`skillmix.evaluation.crossjudge`) holds
the same ``n`` combinations per cell re-graded by the second judge. The report gives:

* **agreement** per evaluation and pooled over all of them: raw agreement and Cohen's kappa on the judges'
  voted rubric points and on each generation's Full Marks, with 95% intervals that resample generations
  (:func:`skillmix.review.agreement.agreement`, the review's code);
* **verdicts under each judge** on the re-graded combinations: every finding decided by the same rule
  (:func:`skillmix.experiment.findings.decide`) twice, from the first judge's grades of those combinations
  and from the second's, and whether the verdict changes. Both are decided on the same, smaller sample,
  so a change is the judge's doing, not the sample's (and both may be less decisive than the full
  evaluation's verdict, which is on every combination).
"""

from __future__ import annotations

import json
from typing import Any

from skillmix.experiment.config import ExperimentConfig
from skillmix.experiment.contrasts import Runs, lookup_of, paired_contrasts


def cross_judge(experiment: Any, runs: Runs, rows: dict[str, int]) -> dict[str, Any]:
    """The second judge's agreement and verdicts (module docstring), as ``findings.json`` holds them."""
    from skillmix.evaluation.crossjudge import AGREEMENT_FILE, agreement_of
    from skillmix.evaluation.files import read_results, read_samples
    from skillmix.experiment.findings import decide
    from skillmix.rules import ScoringRules

    config = experiment.config
    second: Runs = {}
    first: Runs = {}
    evaluations, pooled_first, pooled_second = [], [], []
    protocol: dict[str, Any] = {}
    for stage in experiment.evaluations("crossjudge"):
        key = (stage.student, stage.training_set)
        if key not in runs or not (stage.folder / AGREEMENT_FILE).is_file():
            continue
        results, samples = read_results(stage.folder), read_samples(stage.folder)
        ids = {s["combination"] for s in samples}
        mine = [s for s in runs[key][1] if s["combination"] in ids]
        second[key], first[key] = (results, samples), (runs[key][0], mine)
        record = json.loads((stage.folder / AGREEMENT_FILE).read_text(encoding="utf-8"))
        evaluations.append({"student": stage.student, "run": stage.training_set, **record})
        name = f"{stage.student}--{stage.training_set}:"
        pooled_first += [{**s, "id": name + s["id"]} for s in mine]
        pooled_second += [{**s, "id": name + s["id"]} for s in samples]
        protocol = results["protocol"]
    if not evaluations:
        return {"evaluations": [], "pooled": None, "verdicts": []}
    rules = ScoringRules.from_config(protocol, "the cross-judge's results.json: protocol")
    pooled = agreement_of(pooled_first, pooled_second, int(protocol["grader_runs"]), rules)
    under = [decide(config, lookup_of(paired_contrasts(config, graded)), rows) for graded in (first, second)]
    verdicts = [
        {
            "finding": one["finding"],
            "student": one["student"],
            "first": one["verdict"],
            "second": two["verdict"],
            "changed": one["verdict"] != two["verdict"],
            "checks": [
                {"setting": c["setting"], "k": c["k"], "n": (c["paired"] or {}).get("n")}
                for c in one["checks"]
            ],
        }
        for one, two in zip(*under, strict=True)
    ]
    return {
        "judges": evaluations[0]["judges"],
        "per_cell": evaluations[0]["per_cell"],
        "evaluations": evaluations,
        "pooled": pooled,
        "verdicts": verdicts,
    }


def _figure(record: dict[str, Any] | None, name: str) -> str:
    if not record or record.get(name) is None:
        return "undefined"
    interval = record.get(f"{name}_ci")
    shown = f"{record[name]:.2f}"
    return shown + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")


def cross_judge_lines(config: ExperimentConfig, crossed: dict[str, Any]) -> list[str]:
    """The report's section on the second judge."""
    if not crossed["evaluations"]:
        return ["", "## Second judge", "", "No evaluation was re-graded yet."]
    judges = crossed["judges"]
    lines = [
        "",
        "## Second judge",
        "",
        f"{judges['second']} re-graded {crossed['per_cell']} combinations per setting x k of every "
        f"evaluation (all their generations), first graded by {judges['first']}: the same rubric, grader "
        "runs, sampling and scoring rules. Agreement: raw share and Cohen's kappa with 95% intervals "
        "resampling generations; rubric points as each judge voted them (before the text checks), and "
        "each generation's Full Marks.",
        "",
        "| student | model | generations graded by both | points agree | points kappa | Full Marks agree "
        "| Full Marks kappa |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [
        (e["student"], config.label(e["run"]), e["points"], e["full_marks"]) for e in crossed["evaluations"]
    ]
    pooled = crossed["pooled"]
    rows.append(("all", "pooled", pooled["points"], pooled["full_marks"]))
    for student, model, points, full in rows:
        lines.append(
            f"| {student} | {model} | {full['records']} | {_figure(points, 'raw')} | "
            f"{_figure(points, 'kappa')} | {_figure(full, 'raw')} | {_figure(full, 'kappa')} |"
        )
    changed = [v for v in crossed["verdicts"] if v["changed"]]
    lines += [
        "",
        "Verdicts on the re-graded combinations only, by the same rule, under each judge "
        + (
            "(no verdict changes with the judge):"
            if not changed
            else f"({len(changed)} change with the judge):"
        ),
        "",
    ]
    for v in crossed["verdicts"]:
        who = f" — {v['student']}" if v["student"] else ""
        sizes = sorted({c["n"] for c in v["checks"] if c["n"] is not None})
        n = f"n = {'/'.join(str(s) for s in sizes)} per check" if sizes else "no check ran"
        mark = " **changes**" if v["changed"] else ""
        lines.append(
            f"- Finding {v['finding']}{who}: {v['first']} under the first judge, {v['second']} "
            f"under the second ({n}){mark}"
        )
    return lines
