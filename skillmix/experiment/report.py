"""The experiment's report: ``runs/<experiment>/report/`` with ``report.md``, ``results.csv``,
``findings.json`` and ``plots/``.

* ``results.csv``: one row per student x run (``base`` before fine-tuning; each seed of a set with
  ``seeds``) x setting x k x metric, with the mean over combinations, its standard error and 95% interval
  and n, as each evaluation's results.json holds them, and the mean over seeds with their spread
  (:mod:`skillmix.experiment.contrasts`).
* The paired differences of every contrast the findings and comparisons name, and base -> each set, are
  those of ``skillmix eval compare``: per combination both sides answered (averaged over the seeds of a set
  with several), a paired bootstrap 95% interval and a sign-flip permutation p.
* With ``evaluation.cross_judge``: the second judge's agreement with the first and the verdicts under each
  on the re-graded combinations (:mod:`skillmix.experiment.crossjudge`).
* **Findings** (``findings.json``): each finding's family decides its verdict by the rule of
  :mod:`skillmix.experiment.findings`, for every student that has the sets; the contrasts beside it and the
  declared comparisons are reported as differences, with no verdict. Base -> fine-tuned is reported beside
  the paper, with the judge named.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from skillmix.experiment.config import BASE, ExperimentConfig
from skillmix.experiment.contrasts import METRICS, Runs, cell, lookup_of, paired_contrasts, results_rows
from skillmix.experiment.crossjudge import cross_judge, cross_judge_lines
from skillmix.experiment.findings import RULE, comparisons, decide

# ---------------------------------------------------------------------- the files


def write_report(experiment: Any, out: Path) -> None:
    config = experiment.config
    runs = read_runs(experiment.evaluations())
    pairs = paired_contrasts(config, runs)
    lookup = lookup_of(pairs)
    rows = training_rows(experiment)
    checked: dict[str, Any] = {
        "findings": decide(config, lookup, rows),
        "comparisons": comparisons(config, lookup),
    }
    crossed = cross_judge(experiment, runs, rows) if config.evaluation.cross_judge else None
    if crossed is not None:
        checked["cross_judge"] = crossed
    out.mkdir(parents=True, exist_ok=True)
    table = results_rows(config, runs)
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else ["student"])
        writer.writeheader()
        writer.writerows(table)
    (out / "findings.json").write_text(json.dumps(checked, indent=2), encoding="utf-8")
    figure = _plot(table, out / "plots")
    judges = sorted({str((r.get("judge") or {}).get("model")) for r, _ in runs.values()})
    report = render(config, table, pairs, checked, rows, figure, ", ".join(judges) or "—")
    if crossed is not None:
        report += "\n".join(cross_judge_lines(config, crossed)) + "\n"
    report += "\n".join(failures(config, runs)) + "\n"
    (out / "report.md").write_text(report, encoding="utf-8")


def read_runs(stages: list[Any]) -> Runs:
    """``{(student, run): (results.json, samples)}`` of the stages' folders that hold a result."""
    from skillmix.evaluation.files import read_results, read_samples

    return {
        (stage.student, stage.training_set): (read_results(stage.folder), read_samples(stage.folder))
        for stage in stages
        if (stage.folder / "results.json").is_file()
    }


FAILURES = ("generations", "failed_generations", "errored_generations", "ungraded_generations")


def failures(config: ExperimentConfig, runs: dict) -> list[str]:
    """Per model, the generations its evaluation made and how many failed (the student's: no answer), errored
    (the infrastructure's: left out and retried) or went ungraded (no grader run parsed)."""
    header = " | ".join(name.replace("_", " ") for name in FAILURES)
    lines = ["", "## Failed generations", "", f"| student | training set | {header} |"]
    lines.append("|---|---|" + "---|" * len(FAILURES))
    for (student, ts), (results, _) in runs.items():  # each seed's model apart
        counts = [sum(int(entry.get(name) or 0) for entry in results["results"]) for name in FAILURES]
        lines.append(f"| {student} | {config.label(ts)} | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return lines


def training_rows(experiment: Any) -> dict[str, int]:
    """The Skill-Mix rows of each training set: its configs' rows in the dataset, or their subsample."""
    manifest_file = experiment.dataset_folder / "manifest.json"
    if not manifest_file.is_file():
        return {}
    configs = json.loads(manifest_file.read_text(encoding="utf-8")).get("configs") or {}
    out = {}
    for name, tset in experiment.config.training_sets.items():
        out[name] = sum(
            min(tset.subsample.get(c, 10**12), int((configs.get(c) or {}).get("rows", 0)))
            for c in tset.configs
        )
    return out


def _number(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _interval(low: Any, high: Any) -> str:
    return "" if low is None or high is None else f" [{low:.2f}, {high:.2f}]"


def render(
    config: ExperimentConfig,
    table: list[dict[str, Any]],
    pairs: dict,
    checked: dict[str, list[dict[str, Any]]],
    rows: dict[str, int],
    figure: str | None,
    judge: str = "—",
) -> str:
    columns = sorted({(r["setting"], r["k"]) for r in table}, key=lambda c: (c[0], c[1]))
    models = list(dict.fromkeys((r["student"], r["training_set"], r["seed"]) for r in table))
    seeded = any(seed != "" for _, _, seed in models)
    lines = [
        f"# Experiment {config.name}",
        "",
        f"From `{config.source}`. Training rows per set: "
        + ", ".join(f"{config.label(n)} {rows.get(n, '—')}" for n in config.training_sets)
        + ".",
        "",
    ]
    for metric in METRICS:
        lines += [
            f"## {metric.replace('_', ' ').title()}",
            "",
            "Mean over combinations with its 95% interval (n combinations per cell in results.csv)"
            + (
                "; a set trained with several seeds: each seed's model, then the mean of their means with "
                "the seeds' range (lowest–highest)."
                if seeded
                else "."
            ),
            "",
            "| student | training set | " + " | ".join(f"{s} k={k}" for s, k in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for student, ts, seed in models:
            cells = []
            for setting, k in columns:
                key = (student, ts, seed, setting, k, metric)
                found = next(
                    (r for r in table if tuple(r[c] for c in ROW_KEY) == key),
                    None,
                )
                cells.append(_cell(found))
            lines.append(f"| {student} | {_model_label(ts, seed, found)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Paired differences",
        "",
        "Later minus earlier, Full Marks, per combination both answered: mean difference, paired "
        "bootstrap 95% interval, permutation p (`skillmix eval compare`); a set trained with several seeds "
        "enters with each combination averaged over its seeds' models (seeds: how many on each side).",
        "",
        "| student | compared | setting | k | n | seeds | difference | p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (student, a, b), cells in pairs.items():
        for (setting, k, metric), p in sorted(cells.items()):
            if metric != "full_marks" or not p or p.get("difference") is None:
                continue
            lines.append(
                f"| {student} | {config.label(b)} − {config.label(a)} | {setting} | {k} | {p['n']} | "
                f"{'/'.join(str(n) for n in p.get('seeds') or [1, 1])} | {p['difference']:+.2f}"
                f"{_interval(p['ci_low'], p['ci_high'])} | {_number(p['p'], 3)} |"
            )
    lines += ["", *_published(config, table, pairs, judge), *_findings_section(config, checked)]
    if figure:
        lines += ["", f"![Full Marks by k]({figure})"]
    return "\n".join(lines) + "\n"


ROW_KEY = ("student", "training_set", "seed", "setting", "k", "metric")


def _model_label(label: str, seed: Any, row: dict[str, Any] | None) -> str:
    if seed == "mean":
        return f"{label}, mean of {row['seeds'] if row else '—'} seeds"
    return label if seed == "" else f"{label} seed {seed}"


def _cell(found: dict[str, Any] | None) -> str:
    if found is None:
        return "—"
    if found["seed"] == "mean":
        spread = f" ({_number(found['seed_min'])}–{_number(found['seed_max'])})" if found["seeds"] > 1 else ""
        return _number(found["mean"]) + spread
    return _number(found["mean"]) + _interval(found["ci_low"], found["ci_high"])


def _shown(paired: dict[str, Any] | None) -> str:
    p = paired or {}
    if p.get("difference") is None:
        return "no result"
    difference = f"{p['difference']:+.2f}{_interval(p['ci_low'], p['ci_high'])}"
    return f"{difference}, p = {_number(p['p'], 3)}, n = {p['n']}"


def _findings_section(config: ExperimentConfig, checked: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Each finding per student: its verdict, the family's checks (student and both sets named), and the
    contrasts beside it; then the comparisons, as differences."""
    lines = ["## Findings", "", f"Rule: {RULE}.", ""]
    for f in checked["findings"]:
        who = f" — {f['student']}" if f["student"] else ""
        lines.append(
            f"- **Finding {f['finding']}**{who} ({f['statement']}): **{f['verdict']}**"
            + (f" ({f['reason']})" if f["reason"] else "")
        )
        for label, checks in (("", f["checks"]), ("beside: ", f["beside"])):
            for c in checks:
                sets = f"{config.label(c['b'])} − {config.label(c['a'])}"
                holm = f", Holm p = {c['holm_p']:.3f}" if "holm_p" in c else ""
                lines.append(
                    f"  - {label}{f['student'] or ''} {sets}, {c['setting']} k = {c['k']}, {c['metric']}: "
                    f"{_shown(c['paired'])}{holm}: {c.get('verdict', 'not run')}"
                )
    if checked["comparisons"]:
        lines += ["", "## Comparisons", "", "Differences only: no finding of the paper is tested here.", ""]
        for comparison in checked["comparisons"]:
            for c in comparison["checks"]:
                sets = f"{config.label(c['b'])} − {config.label(c['a'])}"
                lines.append(
                    f"- {comparison['student']} {sets}, {c['setting']} k = {c['k']}, {c['metric']}: "
                    f"{_shown(c['paired'])}"
                )
    return lines


def _published(config: ExperimentConfig, table: list[dict[str, Any]], pairs: dict, judge: str) -> list[str]:
    """The paper's figures beside ours, and base -> each fine-tuned set (the paper's headline contrast, not
    a finding's: any fine-tuning also teaches the answer format), with the judge named."""
    entries = [(name, p) for name, s in config.students.items() for p in s.published]
    lines = ["## Beside the paper", ""]
    headline = [
        f"| {student} | {config.label(b)} − base | {setting} | {k} | {_shown(p)} | {judge} |"
        for (student, a, b), cells in pairs.items()
        if a == BASE
        for (setting, k, metric), p in sorted(cells.items())
        if metric == "full_marks"
    ]
    if headline:
        lines += [
            "Fine-tuned minus base, Full Marks (the paper's headline figure; no verdict).",
            "",
            "| student | compared | setting | k | difference | judge |",
            "|---|---|---|---|---|---|",
            *headline,
            "",
        ]
    if not entries:
        return lines if headline else []
    lines += [
        "| student | model | setting | k | metric | paper | ours | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in entries:
        ours = cell(table, name, config.label(p.model), p.setting, p.k, p.metric)
        shown = "not run" if ours is None else _cell(ours)
        lines.append(
            f"| {name} | {config.label(p.model)} | {p.setting} | {p.k} | {p.metric} | {p.value:.2f} | "
            f"{shown} | {p.source} |"
        )
    return [*lines, ""]


def _plot(table: list[dict[str, Any]], folder: Path) -> str | None:
    """Full Marks by k per model and setting: one line per set (the mean over seeds for a set with
    several, its error bars the seeds' range; else ± 1 standard error over combinations)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeded = {(r["student"], r["training_set"]) for r in table if r["seed"] == "mean"}
    points = [
        r
        for r in table
        if r["metric"] == "full_marks"
        and r["mean"] is not None
        and (r["seed"] == "mean" or (r["student"], r["training_set"]) not in seeded)
    ]
    if not points:
        return None
    settings = sorted({r["setting"] for r in points})
    fig, axes = plt.subplots(1, len(settings), figsize=(5 * len(settings), 3.5), squeeze=False)
    for ax, setting in zip(axes[0], settings, strict=True):
        for student, ts in dict.fromkeys((r["student"], r["training_set"]) for r in points):
            mine = sorted(
                (
                    r
                    for r in points
                    if (r["student"], r["training_set"], r["setting"]) == (student, ts, setting)
                ),
                key=lambda r: r["k"],
            )
            ax.errorbar(
                [r["k"] for r in mine],
                [r["mean"] for r in mine],
                yerr=[_error_bar(r) for r in mine],
                marker="o",
                capsize=3,
                label=f"{student} {ts}",
            )
        ax.set_title(f"{setting}: Full Marks (± 1 s.e.; seeds: their range)")
        ax.set_xlabel("k")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / "full_marks.png", dpi=120)
    plt.close(fig)
    return "plots/full_marks.png"


def _error_bar(row: dict[str, Any]) -> list[float]:
    """``[below, above]`` the point: the seeds' range around their mean, else ± 1 standard error."""
    if row["seed"] == "mean":
        if row["seed_min"] is None:
            return [0.0, 0.0]
        return [row["mean"] - row["seed_min"], row["seed_max"] - row["mean"]]
    return [row["stderr"] or 0.0, row["stderr"] or 0.0]
