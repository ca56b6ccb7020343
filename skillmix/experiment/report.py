"""The experiment's report: ``runs/<experiment>/report/`` with ``report.md``, ``results.csv``,
``findings.json`` and ``plots/``.

* ``results.csv``: one row per student x training set (``base`` before fine-tuning) x setting x k x metric,
  with the mean over combinations, its standard error and 95% interval and n, as each evaluation's
  results.json holds them.
* The paired differences, fine-tuned minus base and (finding 3) one training set minus another, are those
  of ``skillmix eval compare`` (:func:`skillmix.evaluation.report.compare`): per combination both runs
  answered, a paired bootstrap 95% interval and a sign-flip permutation p.
* **Findings**, each a check on our numbers decided by one rule (:func:`verdict`): *reproduced* when the
  paired 95% interval of the difference excludes 0 in the finding's direction, *not reproduced* when it
  excludes 0 in the other direction, *inconclusive* when it includes 0, *not run* when the experiment lacks
  the models, settings or k the check needs (the reason is given). A finding of several checks (one per k)
  is reproduced when every check is, not reproduced when any check is, not run when none ran, and
  inconclusive otherwise.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from skillmix.experiment.config import BASE, ExperimentConfig

METRICS = ("full_marks", "all_skills", "skill_fraction")
RULE = (
    "reproduced when the paired 95% interval of the difference excludes 0 in the finding's direction, not "
    "reproduced when it excludes 0 in the other direction, inconclusive when it includes 0"
)
Lookup = Callable[[str, str, str, str, int], dict[str, Any] | None]  # student, a, b, setting, k -> paired


def verdict(paired: dict[str, Any] | None, direction: int = 1) -> str:
    """The rule of the module docstring on one paired difference (b - a) expected to have ``direction``."""
    if not paired or not paired.get("n") or paired.get("ci_low") is None or paired.get("ci_high") is None:
        return "not run"
    low, high = sorted((direction * paired["ci_low"], direction * paired["ci_high"]))
    if low > 0:
        return "reproduced"
    if high < 0:
        return "not reproduced"
    return "inconclusive"


def overall(verdicts: list[str]) -> str:
    ran = [v for v in verdicts if v != "not run"]
    if not ran:
        return "not run"
    if "not reproduced" in ran:
        return "not reproduced"
    return "reproduced" if len(ran) == len(verdicts) and set(ran) == {"reproduced"} else "inconclusive"


def findings(config: ExperimentConfig, lookup: Lookup, rows: dict[str, int]) -> list[dict[str, Any]]:
    """The three findings as checks on the paired differences ``lookup`` gives (module docstring);
    ``rows`` is the number of training rows of each training set."""
    f = config.findings
    student = f.student or next(iter(config.students))
    has_base = bool(config.students[student].base)
    trained = set(config.students[student].training_sets or config.training_sets)
    specs = [
        (
            "1",
            "training on k = 2, 3 improves k = 4, 5: fine-tuned minus base, Full Marks, held-out k = 4, 5",
            BASE,
            f.full,
            (4, 5),
        ),
        (
            "2",
            "training on training-skill compositions improves held-out-skill compositions: fine-tuned minus "
            "base, Full Marks, held-out k = 2, 3",
            BASE,
            f.full,
            (2, 3),
        ),
        (
            "3",
            "skill-richer data is more data-efficient: fine-tuned on the skill-richer set minus fine-tuned "
            "on D(1,2) of at least as many rows, Full Marks, held-out k = 3, 4, 5",
            f.poorer,
            f.richer,
            (3, 4, 5),
        ),
    ]
    out = []
    for number, statement, a, b, ks in specs:
        reason = _missing(config, student, a, b, has_base, trained)
        if reason is None and number == "3" and rows.get(a, 0) < rows.get(b, 0):
            poorer, richer = f"{config.label(a)} ({rows.get(a, 0)})", f"{config.label(b)} ({rows.get(b, 0)})"
            reason = f"{poorer} has fewer training rows than {richer}: not a test of data efficiency"
        checks = []
        for k in ks:
            paired = None if reason else lookup(student, a, b, "held-out", k)
            checks.append(
                {
                    "setting": "held-out",
                    "k": k,
                    "metric": "full_marks",
                    "paired": paired,
                    "verdict": verdict(paired),
                }
            )
        result = overall([c["verdict"] for c in checks])
        if reason is None and result == "not run":
            reason = "the evaluation has no held-out result at these k"
        out.append(
            {
                "finding": number,
                "statement": statement,
                "student": student,
                "compared": [config.label(a) if a else None, config.label(b) if b else None],
                "verdict": result,
                "reason": reason,
                "checks": checks,
                "rule": RULE,
            }
        )
    return out


def _missing(
    config: ExperimentConfig, student: str, a: str | None, b: str | None, has_base: bool, trained: set[str]
) -> str | None:
    for name in (a, b):
        if name is None:
            return "the experiment names no training set for it (findings)"
        if name == BASE and not has_base:
            return f"{student} has no base model to compare with (students.{student}.base)"
        if name != BASE and name not in trained:
            return f"{student} is not trained on {name}"
    return None


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

    def lookup(student: str, a: str, b: str, setting: str, k: int) -> dict[str, Any] | None:
        return pairs.get((student, a, b), {}).get((setting, k, "full_marks"))

    rows = training_rows(experiment)
    checked = findings(config, lookup, rows)
    out.mkdir(parents=True, exist_ok=True)
    table = results_rows(config, runs)
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]) if table else ["student"])
        writer.writeheader()
        writer.writerows(table)
    (out / "findings.json").write_text(json.dumps(checked, indent=2), encoding="utf-8")
    figure = _plot(config, table, out / "plots")
    (out / "report.md").write_text(render(config, table, pairs, checked, rows, figure), encoding="utf-8")


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
    """``{(student, a, b): {(setting, k, metric): paired}}`` for base -> each set and poorer -> richer."""
    from skillmix.evaluation.report import compare

    wanted = {(s, BASE, ts) for s, ts in config.runs()}
    f = config.findings
    for student in config.students:
        if f.poorer and f.richer:
            wanted.add((student, f.poorer, f.richer))
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
    checked: list[dict[str, Any]],
    rows: dict[str, int],
    figure: str | None,
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
    lines += ["", *_published(config, table), "## Findings", "", f"Rule: {RULE}.", ""]
    for f in checked:
        lines.append(
            f"- **Finding {f['finding']}** ({f['statement']}): **{f['verdict']}**"
            + (f" — {f['reason']}" if f["reason"] else "")
        )
        for c in f["checks"]:
            p = c["paired"] or {}
            shown = (
                "no result"
                if p.get("difference") is None
                else (f"{p['difference']:+.2f}{_interval(p['ci_low'], p['ci_high'])}, n = {p['n']}")
            )
            lines.append(f"  - {c['setting']} k = {c['k']}: {shown}: {c['verdict']}")
    if figure:
        lines += ["", f"![Full Marks by k]({figure})"]
    return "\n".join(lines) + "\n"


def _published(config: ExperimentConfig, table: list[dict[str, Any]]) -> list[str]:
    entries = [(name, p) for name, s in config.students.items() for p in s.published]
    if not entries:
        return []
    lines = [
        "## Beside the paper",
        "",
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
