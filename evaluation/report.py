"""The reports of ``skillmix eval``, read from its ``results.json``: the results table of one run and the
comparison of several runs (e.g. a base model against its fine-tuned student).

* :func:`render_results_md`: ``results.md``, the papers' layout: a header naming the student, the judge and
  the protocol, then one table with a row per k and a column per setting x metric, each cell
  ``mean ± s.e.``; then a line per (k, setting) with unparseable grades or failed generations.
* :func:`compare`: for each k, setting and metric, each run's ``mean ± s.e.`` side by side, the difference
  of every later run against the first (the baseline) and whether their 95% intervals overlap. Cells a
  run lacks are ``—``, never filled in. Runs whose protocols differ (generations, grader runs, name
  penalty) are refused: their numbers do not measure the same thing.
* :func:`write_comparison`: reads ``DIR/results.json`` of each folder and writes ``comparison.md``,
  ``comparison.json`` and ``plots/*.png`` into ``OUT``; a folder without results is refused before
  anything is written.

Nothing is computed here but differences of means: the metrics come from :mod:`skillmix.metrics` through
results.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skillmix.evaluation.files import read_results, write_text_atomic
from skillmix.evaluation.plots import (
    cells,
    display_name,
    finite,
    ordered_keys,
    ordered_settings,
    plot_results,
    summary,
)
from skillmix.metrics import METRICS

MISSING = "—"
COMPARED = ("generations", "grader_runs", "name_penalty")  # runs must agree on these to be compared
ISSUES = {
    "unparseable_grades": "unparseable grades",
    "failed_generations": "failed generations",
    "judge_errors": "judge errors",
    "not_run": "generations not run",
    "excluded": "combinations excluded (no graded generation)",
}


# ---------------------------------------------------------------------- one run


def render_results_md(results: dict[str, Any]) -> str:
    """``results.md`` of one run: header, the table (rows k, columns setting x metric), issues."""
    student = results.get("student") or {}
    lines = [f"# Skill-Mix evaluation of {student.get('model') or 'a student'}", ""]
    lines += _header(results)
    grid = cells(results)
    settings = ordered_settings(setting for _, setting in grid)
    columns = [(setting, metric) for setting in settings for metric in METRICS]
    lines += ["", "| k | " + " | ".join(f"{s}: {display_name(m)}" for s, m in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for k in sorted({k for k, _ in grid}):
        row = [_cell(summary(grid.get((k, s)), m)) for s, m in columns]
        lines.append(f"| {k} | " + " | ".join(row) + " |")
    lines += ["", _sizes(grid)]
    issues = _issues(grid)
    if issues:
        lines += ["", *issues]
    return "\n".join(lines) + "\n"


def _header(results: dict[str, Any]) -> list[str]:
    student, judge = results.get("student") or {}, results.get("judge") or {}
    protocol = results.get("protocol") or {}
    run = f"- Run: `{results.get('run_id') or MISSING}`"
    if results.get("created"):
        run += f", {results['created']}"
    if finite(results.get("cost_usd")):
        run += f", cost ${results['cost_usd']:.2f}"
    return [
        f"- Student: {_model(student)}",
        f"- Judge: {_model(judge)}",
        f"- Protocol: {_protocol(protocol)}",
        run,
    ]


def _model(model: dict[str, Any]) -> str:
    parts = [f"`{model.get('model') or MISSING}`"]
    if "revision" in model:
        parts.append(f"revision `{model['revision']}`" if model["revision"] else "revision not pinned")
    if model.get("engine"):
        parts.append(f"engine {model['engine']}")
    if model.get("base_url"):
        parts.append(f"at {model['base_url']}")
    return ", ".join(parts)


def _protocol(protocol: dict[str, Any]) -> str:
    parts = [
        f"{protocol.get('generations', MISSING)} generations per combination (the best counts)",
        f"{protocol.get('grader_runs', MISSING)} grader runs (majority vote)",
        f"name penalty {_on_off(protocol.get('name_penalty'))}",
    ]
    if "length_override" in protocol:
        parts.append(f"length override {_on_off(protocol['length_override'])}")
    if protocol.get("grader_format"):
        parts.append(f"grader format {protocol['grader_format']}")
    if "seed" in protocol:
        parts.append(f"seed {protocol['seed']}")
    if protocol.get("eval_set"):
        parts.append(f"eval set `{protocol['eval_set']}`")
    return ", ".join(parts)


def _on_off(value: Any) -> str:
    return MISSING if value is None else "on" if value else "off"


def _cell(found: dict[str, Any] | None) -> str:
    if found is None:
        return MISSING
    stderr = f"{found['stderr']:.2f}" if finite(found.get("stderr")) else "n/a"
    return f"{found['mean']:.2f} ± {stderr}"


def _sizes(grid: dict[tuple[int, str], dict[str, Any]]) -> str:
    note = "Cells: mean ± standard error over n combinations"
    sizes = {row.get("n") for row in grid.values()}
    if not sizes:
        return "No results."
    if len(sizes) == 1:
        return f"{note}, n = {sizes.pop()} per cell."
    listed = ", ".join(f"k={k} {s} {grid[(k, s)].get('n')}" for k, s in ordered_keys(grid))
    return f"{note}: {listed}."


def _issues(grid: dict[tuple[int, str], dict[str, Any]]) -> list[str]:
    lines = []
    for k, setting in ordered_keys(grid):
        row = grid[(k, setting)]
        found = [f"{row[key]} {what}" for key, what in ISSUES.items() if row.get(key)]
        if found:
            of = f" (of {row['generations']} generations)" if row.get("generations") else ""
            lines.append(f"- k={k} {setting}: {', '.join(found)}{of}")
    return lines


# ---------------------------------------------------------------------- several runs


def compare(runs: list[tuple[str, dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """Compare runs ([(name, results.json dict)], the first is the baseline): (Markdown, dict).

    ``name`` (a folder name) is appended to a label that two runs share. ValueError (one line) when there
    is no run or the protocols differ.
    """
    if not runs:
        raise ValueError("nothing to compare: no runs given")
    _check_protocols(runs)
    labels = run_labels(runs)
    rows = _rows(runs, labels)
    data = {
        "baseline": labels[0],
        "protocol": {key: (runs[0][1].get("protocol") or {}).get(key) for key in COMPARED},
        "runs": [
            _run_entry(label, name, results) for label, (name, results) in zip(labels, runs, strict=True)
        ],
        "rows": rows,
    }
    return _compare_md(data, runs), data


def run_labels(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The student model (``@revision`` when set) of each run; the name appended where labels collide."""
    base = []
    for _, results in runs:
        student = results.get("student") or {}
        label = str(student.get("model") or "student")
        base.append(f"{label}@{student['revision']}" if student.get("revision") else label)
    labels = [f"{b} ({name})" if base.count(b) > 1 else b for b, (name, _) in zip(base, runs, strict=True)]
    return [f"{label} #{i + 1}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]


def _check_protocols(runs: list[tuple[str, dict[str, Any]]]) -> None:
    problems = []
    for key in COMPARED:
        groups: dict[str, list[str]] = {}
        for name, results in runs:
            groups.setdefault(json.dumps((results.get("protocol") or {}).get(key)), []).append(name)
        if len(groups) > 1:
            listed = "; ".join(f"{value} in {', '.join(names)}" for value, names in groups.items())
            problems.append(f"{key} differs ({listed})")
    if problems:
        raise ValueError(f"cannot compare runs of different protocols: {'; '.join(problems)}")


def _rows(runs: list[tuple[str, dict[str, Any]]], labels: list[str]) -> list[dict[str, Any]]:
    grids = [cells(results) for _, results in runs]
    rows = []
    for k, setting in ordered_keys({key for grid in grids for key in grid}):
        for metric in METRICS:
            values = [_clean(summary(grid.get((k, setting)), metric)) for grid in grids]
            versus = {
                label: _versus(values[0], value) for label, value in zip(labels[1:], values[1:], strict=True)
            }
            rows.append(
                {
                    "k": k,
                    "setting": setting,
                    "metric": metric,
                    "values": dict(zip(labels, values, strict=True)),
                    "vs_baseline": versus,
                }
            )
    return rows


def _clean(found: dict[str, Any] | None) -> dict[str, float | None] | None:
    if found is None:
        return None
    return {
        key: found.get(key) if finite(found.get(key)) else None
        for key in ("mean", "stderr", "ci_low", "ci_high")
    }


def _versus(baseline: dict[str, Any] | None, other: dict[str, Any] | None) -> dict[str, Any]:
    if baseline is None or other is None:
        return {"difference": None, "intervals": None}
    bounds = [baseline["ci_low"], baseline["ci_high"], other["ci_low"], other["ci_high"]]
    intervals = None
    if all(bound is not None for bound in bounds):
        overlap = bounds[0] <= bounds[3] and bounds[2] <= bounds[1]
        intervals = "overlap" if overlap else "separate"
    return {"difference": other["mean"] - baseline["mean"], "intervals": intervals}


def _shared_protocol(runs: list[dict[str, Any]]) -> str:
    """The protocol line of the settings all runs share, and the names of those they do not."""
    protocols = [run.get("protocol") or {} for run in runs]
    keys = [key for key in protocols[0] if key != "prompt_hashes"]
    differ = [key for key in keys if any(p.get(key) != protocols[0][key] for p in protocols[1:])]
    line = _protocol({key: protocols[0][key] for key in keys if key not in differ})
    return f"{line}; differs between the runs: {', '.join(differ)}" if differ else line


def _run_entry(label: str, name: str, results: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": label,
        "name": name,
        "run_id": results.get("run_id"),
        "student": results.get("student"),
        "judge": results.get("judge"),
    }


def _compare_md(data: dict[str, Any], runs: list[tuple[str, dict[str, Any]]]) -> str:
    labels = [run["label"] for run in data["runs"]]
    lines = [
        "# Skill-Mix comparison",
        "",
        f"- Protocol: {_shared_protocol([results for _, results in runs])}",
        f"- Baseline: {labels[0]}; Δ is a run's mean minus the baseline's; 95% CI says whether the two "
        "95% intervals overlap or are separate",
        "",
        "| run | student | judge | run id |",
        "|---|---|---|---|",
    ]
    for run in data["runs"]:
        judge = (run["judge"] or {}).get("model") or MISSING
        lines.append(f"| {run['label']} | {_model(run['student'] or {})} | `{judge}` | `{run['run_id']}` |")
    for metric in METRICS:
        header = ["k", "setting", *labels]
        for label in labels[1:]:
            header += [f"Δ {label}", f"95% CI {label}"]
        lines += [
            "",
            f"## {display_name(metric)}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        for row in (r for r in data["rows"] if r["metric"] == metric):
            cells_ = [str(row["k"]), row["setting"], *(_cell(row["values"][label]) for label in labels)]
            for label in labels[1:]:
                versus = row["vs_baseline"][label]
                difference = versus["difference"]
                cells_ += [
                    MISSING if difference is None else f"{difference:+.2f}",
                    versus["intervals"] or MISSING,
                ]
            lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(dirs: list[Path], out: Path) -> None:
    """Compare the runs in ``dirs`` (the first is the baseline) into ``out``: comparison.md, comparison.json
    and plots/*.png. ValueError (one line) before anything is written when a folder has no readable
    results.json or the protocols differ."""
    runs = [(_name(Path(d)), read_results(Path(d))) for d in _existing(dirs)]
    markdown, data = compare(runs)
    for run, folder in zip(data["runs"], dirs, strict=True):
        run["folder"] = str(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "comparison.md", markdown)
    write_text_atomic(
        out / "comparison.json", json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    )
    plot_results(
        [(run["label"], results) for run, (_, results) in zip(data["runs"], runs, strict=True)], out / "plots"
    )


def _existing(dirs: list[Path]) -> list[Path]:
    missing = [str(d) for d in dirs if not (Path(d) / "results.json").is_file()]
    if missing:
        raise ValueError(f"no results.json in {', '.join(missing)} (run `skillmix eval` there first)")
    return [Path(d) for d in dirs]


def _name(folder: Path) -> str:
    return folder.name or folder.resolve().name
