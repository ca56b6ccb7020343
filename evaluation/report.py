"""The reports of ``skillmix eval``: the results table of one run, read from its ``results.json``, and the
paired comparison of several runs (e.g. a base model against its fine-tuned student), read from their
``results.json`` and ``samples.jsonl``.

* :func:`render_results_md`: ``results.md``, the papers' layout: a header naming the student, the judge and
  the protocol, then one table with a row per k and a column per setting x metric, each cell
  ``mean ± s.e.``; then a line per (k, setting) with unparseable grades, failed, ungraded (no grader run
  parsed) or errored (stopped by the infrastructure) generations, the rule ungraded ones were scored by,
  and the errored generations by id: the same ``skillmix eval`` command again retries them.
* :func:`compare`: runs whose protocols differ (the judge, its temperature, grader runs, generations, the
  length override, the name penalty, the rule for ungraded generations, the eval set:
  :data:`skillmix.evaluation.pairing.FIELDS`) are refused, their numbers do not measure the same thing,
  unless the caller allows the field; the report then names it with each run's value. For each k, setting
  and metric, each run's ``mean ± s.e.`` side by side, and each later run against the first (the
  baseline) pair by pair, on the n combinations both answered and both scored: the mean difference, its
  paired bootstrap 95% interval and a paired permutation p-value (:mod:`skillmix.evaluation.pairing` says
  why and how); ``*`` marks p < 0.05. Both runs answered the same questions, so whether their two
  intervals overlap is not asked: it ignores the pairing. Cells a run lacks are ``—``, never filled in.
* :func:`write_comparison`: reads each folder and writes ``comparison.md``, ``comparison.json`` and
  ``plots/*.png`` into ``OUT``; a folder without results.json or samples.jsonl, or a refused protocol,
  stops it before anything is written.

Nothing is computed here: the metrics come from :mod:`skillmix.metrics` through results.json and, per
combination, through :mod:`skillmix.evaluation.pairing`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
from skillmix.evaluation.files import read_results, read_samples, write_text_atomic
from skillmix.evaluation.pairing import (
    ALPHA,
    BOOTSTRAP,
    PERMUTATION,
    STATISTICS,
    check_protocols,
    paired,
    per_combination,
    protocol_fields,
    shown,
)
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
from skillmix.rules import UNRECORDED_UNPARSEABLE

MISSING = "—"
ISSUES = {
    "unparseable_grades": "unparseable grades",
    "failed_generations": "failed generations",
    "ungraded_generations": "ungraded generations (no grader run parsed)",
    "errored_generations": "errored generations (the infrastructure stopped them: left out)",
    "judge_errors": "judge errors",
    "not_run": "generations not run",
    "excluded": "combinations excluded (no graded generation)",
}
UNGRADED = {"zero": "scored 0", "drop": "left out of the metrics"}  # by protocol.unparseable
LISTED = 20  # errored generation ids shown in results.md (results.json lists all)


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
    issues = _issues(results)
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
    if protocol.get("unparseable"):
        parts.append(f"ungraded generations {UNGRADED.get(protocol['unparseable'], protocol['unparseable'])}")
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


def _issues(results: dict[str, Any]) -> list[str]:
    grid = cells(results)
    lines = []
    for k, setting in ordered_keys(grid):
        row = grid[(k, setting)]
        found = [f"{row[key]} {what}" for key, what in ISSUES.items() if row.get(key)]
        if found:
            of = f" (of {row['generations']} generations)" if row.get("generations") else ""
            lines.append(f"- k={k} {setting}: {', '.join(found)}{of}")
    if any(row.get("ungraded_generations") for row in grid.values()):
        rule = (results.get("protocol") or {}).get("unparseable", UNRECORDED_UNPARSEABLE)
        lines.append(f"- Ungraded generations are {UNGRADED.get(rule, rule)} (`unparseable: {rule}`).")
    errored = results.get("errored") or []
    if errored:
        ids = ", ".join(f"`{generation}`" for generation in errored[:LISTED])
        if len(errored) > LISTED:
            ids += f" and {len(errored) - LISTED} more (results.json lists all)"
        lines.append(
            f"- Errored generations, left out of the metrics (the same `skillmix eval` command again retries "
            f"them): {ids}"
        )
    return lines


# ---------------------------------------------------------------------- several runs


def compare(
    runs: list[tuple[str, dict[str, Any]]],
    allow: Iterable[str] = (),
    samples: list[list[dict[str, Any]]] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Compare runs ([(name, results.json dict)], the first is the baseline): (Markdown, dict).

    ``samples`` (each run's samples.jsonl, in the order of ``runs``) gives the paired statistics; without
    them those cells are ``—``. ``name`` (a folder name) is appended to a label that two runs share.
    ConfigError (one line) when a field of :data:`skillmix.evaluation.pairing.FIELDS` differs and
    ``allow`` does not name it; ValueError when there is no run.
    """
    if not runs:
        raise ConfigError("nothing to compare: no runs given")
    differing = check_protocols(runs, allow)
    labels = run_labels(runs)
    found = [None] * len(runs)
    if samples is not None:
        found = [
            per_combination(name, results, got) for (name, results), got in zip(runs, samples, strict=True)
        ]
    data = {
        "baseline": labels[0],
        "protocol": protocol_fields(runs[0][1]),
        "allowed_differences": {
            field: dict(zip(labels, values, strict=True)) for field, values in differing.items()
        },
        "statistics": STATISTICS,
        "runs": [
            _run_entry(label, name, results) for label, (name, results) in zip(labels, runs, strict=True)
        ],
        "rows": _rows(runs, labels, found),
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


def _rows(
    runs: list[tuple[str, dict[str, Any]]], labels: list[str], found: list[dict | None]
) -> list[dict[str, Any]]:
    grids = [cells(results) for _, results in runs]
    rows = []
    for k, setting in ordered_keys({key for grid in grids for key in grid}):
        pairs = [None if per_run is None else per_run.get((k, setting)) for per_run in found]
        for column, metric in enumerate(METRICS):
            values = [_clean(summary(grid.get((k, setting)), metric)) for grid in grids]
            versus = {
                label: paired(pairs[0], other, column)
                for label, other in zip(labels[1:], pairs[1:], strict=True)
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
    ]
    for field, values in data["allowed_differences"].items():
        listed = "; ".join(f"{shown(value)} in {label}" for label, value in values.items())
        lines.append(f"- Compared although {field} differs (`--allow-different {field}`): {listed}")
    lines += [
        f"- Baseline: {labels[0]}. {_method()}",
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
            header += [f"Δ {label} [95% CI]", f"p {label}", f"n {label}"]
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
                cells_ += _paired_cells(row["vs_baseline"][label])
            lines.append("| " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


def _method() -> str:
    draws, exact, flips = BOOTSTRAP["n_resamples"], PERMUTATION["exact_up_to"], PERMUTATION["n_permutations"]
    return (
        "Δ: a run minus the baseline, combination by combination, averaged over the n combinations both "
        f"answered and both scored, with its paired bootstrap 95% interval ({draws} resamples of those "
        f"combinations, seed {BOOTSTRAP['seed']}); p: two-sided paired sign-flip permutation test (every "
        f"sign pattern when at most {exact} differences are nonzero, else {flips} random ones with seed "
        f"{PERMUTATION['seed']}, marked MC); * marks p < {ALPHA}"
    )


def _paired_cells(found: dict[str, Any]) -> list[str]:
    """``+0.30* [+0.10, +0.50]``, ``0.004``, ``40``: Δ with its interval, p, n."""
    n = MISSING if found["n"] is None else str(found["n"])
    if found["difference"] is None:
        return [MISSING, MISSING, n]
    star = "*" if found["significant"] else ""
    p = "<0.001" if found["p"] < 0.001 else f"{found['p']:.3f}"
    return [
        f"{found['difference']:+.2f}{star} [{found['ci_low']:+.2f}, {found['ci_high']:+.2f}]",
        p + (" (MC)" if found["p_method"] == "monte-carlo" else ""),
        n,
    ]


def write_comparison(dirs: list[Path], out: Path, allow: Iterable[str] = ()) -> None:
    """Compare the runs in ``dirs`` (the first is the baseline) into ``out``: comparison.md, comparison.json
    and plots/*.png. Before anything is written: ValueError (one line) when a folder has no readable
    results.json or samples.jsonl, ConfigError when the protocols differ in a field ``allow`` leaves out."""
    folders = _existing(dirs)
    runs = [(_name(folder), read_results(folder)) for folder in folders]
    check_protocols(runs, allow)  # before the samples are read
    markdown, data = compare(runs, allow, [read_samples(folder) for folder in folders])
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
        raise ConfigError(f"no results.json in {', '.join(missing)} (run `skillmix eval` there first)")
    return [Path(d) for d in dirs]


def _name(folder: Path) -> str:
    return folder.name or folder.resolve().name
