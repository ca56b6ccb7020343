"""The experiment's report: ``runs/<experiment>/report/`` with ``report.md``, ``results.csv``,
``findings.json`` and ``plots/``.

* ``results.csv``: one row per student x training set (``base`` before fine-tuning) x setting x k x metric,
  with the mean over combinations, its standard error and 95% interval and n, as each evaluation's
  results.json holds them.
* The paired differences of every contrast the findings and comparisons name, and base -> each set, are
  those of ``skillmix eval compare`` (:func:`skillmix.evaluation.report.compare`): per combination both runs
  answered, a paired bootstrap 95% interval and a sign-flip permutation p.
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
from skillmix.experiment.findings import RULE, comparisons, decide

METRICS = ("full_marks", "all_skills", "skill_fraction")


# ---------------------------------------------------------------------- the files


def write_report(experiment: Any, out: Path) -> None:
    from skillmix.evaluation.files import read_results, read_samples

    config = experiment.config
    runs = {}
    for stage in experiment.evaluations():
        if (stage.folder / "results.json").is_file():
            runs[(stage.student, stage.training_set)] = (
                read_results(stage.folder),
                read_samples(stage.folder),
            )
    pairs = _pairs(config, runs)

    def lookup(student: str, a: str, b: str, setting: str, k: int, metric: str) -> dict[str, Any] | None:
        return pairs.get((student, a, b), {}).get((setting, k, metric))

    rows = training_rows(experiment)
    checked = {"findings": decide(config, lookup, rows), "comparisons": comparisons(config, lookup)}
    out.mkdir(parents=True, exist_ok=True)
    table = results_rows(config, runs)
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else ["student"])
        writer.writeheader()
        writer.writerows(table)
    (out / "findings.json").write_text(json.dumps(checked, indent=2), encoding="utf-8")
    figure = _plot(config, table, out / "plots")
    judges = sorted({str((r.get("judge") or {}).get("model")) for r, _ in runs.values()})
    report = render(config, table, pairs, checked, rows, figure, ", ".join(judges) or "—")
    report += "\n".join(failures(config, runs)) + "\n"
    (out / "report.md").write_text(report, encoding="utf-8")


FAILURES = ("generations", "failed_generations", "errored_generations", "ungraded_generations")


def failures(config: ExperimentConfig, runs: dict) -> list[str]:
    """Per model, the generations its evaluation made and how many failed (the student's: no answer), errored
    (the infrastructure's: left out and retried) or went ungraded (no grader run parsed)."""
    header = " | ".join(name.replace("_", " ") for name in FAILURES)
    lines = ["", "## Failed generations", "", f"| student | training set | {header} |"]
    lines.append("|---|---|" + "---|" * len(FAILURES))
    for (student, ts), (results, _) in runs.items():
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


def _pairs(
    config: ExperimentConfig, runs: dict
) -> dict[tuple[str, str, str], dict[tuple[str, int, str], Any]]:
    """``{(student, a, b): {(setting, k, metric): paired}}`` for base -> each set and every contrast."""
    from skillmix.evaluation.report import compare

    wanted = {(s, BASE, ts) for s, ts in config.runs()}
    contrasts = [c for f in config.finding_list() for c in (*f.family, *f.beside)] + config.comparisons
    for student in config.students:
        wanted |= {(student, c.a, c.b) for c in contrasts}
    out = {}
    for student, a, b in sorted(wanted):
        if (student, a) not in runs or (student, b) not in runs:
            continue
        (ra, sa), (rb, sb) = runs[(student, a)], runs[(student, b)]
        _, data = compare([(f"{student}--{a}", ra), (f"{student}--{b}", rb)], samples=[sa, sb])
        out[(student, a, b)] = {
            (row["setting"], row["k"], row["metric"]): next(iter(row["vs_baseline"].values()))
            for row in data["rows"]
        }
    return out


def results_rows(config: ExperimentConfig, runs: dict) -> list[dict[str, Any]]:
    table = []
    for (student, ts), (results, _) in runs.items():
        for entry in results["results"]:
            for metric in METRICS:
                summary = entry.get(metric) or {}
                table.append(
                    {
                        "student": student,
                        "training_set": config.label(ts),
                        "setting": entry["setting"],
                        "k": entry["k"],
                        "metric": metric,
                        "mean": summary.get("mean"),
                        "stderr": summary.get("stderr"),
                        "ci_low": summary.get("ci_low"),
                        "ci_high": summary.get("ci_high"),
                        "n": entry.get("n"),
                    }
                )
    return table


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
    models = list(dict.fromkeys((r["student"], r["training_set"]) for r in table))
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
            "Mean over combinations with its 95% interval (n combinations per cell in results.csv).",
            "",
            "| student | training set | " + " | ".join(f"{s} k={k}" for s, k in columns) + " |",
            "|---|---|" + "---|" * len(columns),
        ]
        for student, ts in models:
            cells = []
            for setting, k in columns:
                found = next(
                    (
                        r
                        for r in table
                        if (r["student"], r["training_set"], r["setting"], r["k"], r["metric"])
                        == (student, ts, setting, k, metric)
                    ),
                    None,
                )
                cells.append(
                    "—"
                    if found is None
                    else _number(found["mean"]) + _interval(found["ci_low"], found["ci_high"])
                )
            lines.append(f"| {student} | {ts} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Paired differences",
        "",
        "Later minus earlier, Full Marks, per combination both answered: mean difference, paired "
        "bootstrap 95% interval, permutation p (`skillmix eval compare`).",
        "",
        "| student | compared | setting | k | n | difference | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for (student, a, b), cells in pairs.items():
        for (setting, k, metric), p in sorted(cells.items()):
            if metric != "full_marks" or not p or p.get("difference") is None:
                continue
            lines.append(
                f"| {student} | {config.label(b)} − {config.label(a)} | {setting} | {k} | {p['n']} | "
                f"{p['difference']:+.2f}{_interval(p['ci_low'], p['ci_high'])} | {_number(p['p'], 3)} |"
            )
    lines += ["", *_published(config, table, pairs, judge), *_findings_section(config, checked)]
    if figure:
        lines += ["", f"![Full Marks by k]({figure})"]
    return "\n".join(lines) + "\n"


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
        ours = next(
            (
                r
                for r in table
                if (r["student"], r["training_set"], r["setting"], r["k"], r["metric"])
                == (name, config.label(p.model) if p.model != BASE else BASE, p.setting, p.k, p.metric)
            ),
            None,
        )
        shown = (
            "not run" if ours is None else _number(ours["mean"]) + _interval(ours["ci_low"], ours["ci_high"])
        )
        lines.append(
            f"| {name} | {config.label(p.model)} | {p.setting} | {p.k} | {p.metric} | {p.value:.2f} | "
            f"{shown} | {p.source} |"
        )
    return [*lines, ""]


def _plot(config: ExperimentConfig, table: list[dict[str, Any]], folder: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in table if r["metric"] == "full_marks" and r["mean"] is not None]
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
                yerr=[r["stderr"] or 0 for r in mine],
                marker="o",
                capsize=3,
                label=f"{student} {ts}",
            )
        ax.set_title(f"{setting}: Full Marks (± 1 s.e.)")
        ax.set_xlabel("k")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / "full_marks.png", dpi=120)
    plt.close(fig)
    return "plots/full_marks.png"
