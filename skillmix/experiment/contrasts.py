"""The experiment's numbers from its evaluations: each cell per model and over seeds, and every paired
contrast the findings, the comparisons and "beside the paper" ask for.

``runs`` maps ``(student, run)`` to an evaluation's ``(results.json, samples)``; a run is a training set,
``base``, or one seed's run of a set with ``seeds`` (``D123@seed1``).

* **Cells** (:func:`results_rows`): one row per run x setting x k x metric, as its results.json holds it
  (mean over combinations, standard error, 95% interval, n); for a set trained with several seeds, one
  more row per cell (``seed``: ``mean``) with the mean of the seeds' means, the number of seeds and their
  spread (lowest, highest, sample standard deviation over the seeds); its ``n`` is the smallest of the
  seeds' (no standard error or interval: the seed-averaged contrasts carry the uncertainty).
* **Paired contrasts** (:func:`paired_contrasts`), ``b`` minus ``a`` per combination, by
  :func:`skillmix.evaluation.pairing.paired` (paired bootstrap 95% interval, sign-flip permutation p),
  exactly as ``skillmix eval compare`` computes them; for a set with seeds, each combination's value is
  first averaged over the seeds' models (:func:`skillmix.evaluation.pairing.mean_over_runs`), so that a
  verdict is decided on the seed-averaged paired differences (the combinations are the unit of the test;
  the seeds reduce the training noise in each). The runs compared must share their protocol
  (:func:`skillmix.evaluation.pairing.check_protocols`: one judge, one eval set, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from skillmix.experiment.config import BASE, ExperimentConfig

METRICS = ("full_marks", "all_skills", "skill_fraction")
Runs = dict[tuple[str, str], tuple[dict[str, Any], list[dict[str, Any]]]]
Pairs = dict[tuple[str, str, str], dict[tuple[str, int, str], Any]]


def by_set(config: ExperimentConfig, runs: Runs) -> dict[tuple[str, str], list[str]]:
    """``{(student, set): [its runs]}``, in the order of ``runs``."""
    out: dict[tuple[str, str], list[str]] = {}
    for student, run in runs:
        out.setdefault((student, config.set_of(run)), []).append(run)
    return out


def wanted_contrasts(config: ExperimentConfig) -> set[tuple[str, str, str]]:
    """``(student, a, b)``: base -> each set, and every contrast of the findings and comparisons."""
    wanted = {(s, BASE, config.set_of(run)) for s, run in config.runs()}
    contrasts = [c for f in config.finding_list() for c in (*f.family, *f.beside)] + config.comparisons
    for student in config.students:
        wanted |= {(student, c.a, c.b) for c in contrasts}
    return wanted


def paired_contrasts(config: ExperimentConfig, runs: Runs) -> Pairs:
    """``{(student, a, b): {(setting, k, metric): paired}}`` (module docstring); ``paired`` also names the
    number of seeds on each side (``seeds``)."""
    from skillmix.evaluation.pairing import check_protocols, mean_over_runs, paired, per_combination

    sets = by_set(config, runs)
    values = {
        key: mean_over_runs([per_combination(f"{key[0]}--{run}", *runs[(key[0], run)]) for run in members])
        for key, members in sets.items()
    }
    out: Pairs = {}
    for student, a, b in sorted(wanted_contrasts(config)):
        if (student, a) not in sets or (student, b) not in sets:
            continue
        members = [
            (f"{student}--{run}", runs[(student, run)][0]) for s in (a, b) for run in sets[(student, s)]
        ]
        check_protocols(members)
        va, vb = values[(student, a)], values[(student, b)]
        seeds = [len(sets[(student, a)]), len(sets[(student, b)])]
        out[(student, a, b)] = {
            (setting, k, metric): {
                **paired(va.get((k, setting)), vb.get((k, setting)), column),
                "seeds": seeds,
            }
            for (k, setting) in sorted(set(va) | set(vb), key=lambda cell: (cell[1], cell[0]))
            for column, metric in enumerate(METRICS)
        }
    return out


def lookup_of(pairs: Pairs) -> Callable[[str, str, str, str, int, str], dict[str, Any] | None]:
    """The lookup :func:`skillmix.experiment.findings.decide` asks the pairs through."""

    def lookup(student: str, a: str, b: str, setting: str, k: int, metric: str) -> dict[str, Any] | None:
        return pairs.get((student, a, b), {}).get((setting, k, metric))

    return lookup


def results_rows(config: ExperimentConfig, runs: Runs) -> list[dict[str, Any]]:
    """The cells of every run, then the mean over seeds of each set with several (module docstring)."""
    table = []
    for (student, run), (results, _) in runs.items():
        seed = config.seed_of(run)
        for entry in results["results"]:
            for metric in METRICS:
                summary = entry.get(metric) or {}
                table.append(
                    {
                        "student": student,
                        "training_set": config.label(config.set_of(run)),
                        "seed": "" if seed is None else seed,
                        "setting": entry["setting"],
                        "k": entry["k"],
                        "metric": metric,
                        "mean": summary.get("mean"),
                        "stderr": summary.get("stderr"),
                        "ci_low": summary.get("ci_low"),
                        "ci_high": summary.get("ci_high"),
                        "n": entry.get("n"),
                        "seeds": 1,
                        "seed_min": None,
                        "seed_max": None,
                        "seed_sd": None,
                    }
                )
    return table + _seed_means(table)


def _seed_means(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for row in table:
        if row["seed"] != "":
            key = (row["student"], row["training_set"], row["setting"], row["k"], row["metric"])
            cells.setdefault(key, []).append(row)
    out = []
    for (student, label, setting, k, metric), members in cells.items():
        means = np.array([r["mean"] for r in members if r["mean"] is not None], dtype=float)
        out.append(
            {
                "student": student,
                "training_set": label,
                "seed": "mean",
                "setting": setting,
                "k": k,
                "metric": metric,
                "mean": float(means.mean()) if means.size else None,
                "stderr": None,
                "ci_low": None,
                "ci_high": None,
                "n": min((r["n"] for r in members if r["n"] is not None), default=None),
                "seeds": int(means.size),
                "seed_min": float(means.min()) if means.size else None,
                "seed_max": float(means.max()) if means.size else None,
                "seed_sd": float(means.std(ddof=1)) if means.size > 1 else None,
            }
        )
    return out


def cell(table: list[dict[str, Any]], student: str, label: str, setting: str, k: int, metric: str) -> Any:
    """The row a model's cell is read from: the mean over seeds of a set with seeds, else its one run."""
    found = [
        r
        for r in table
        if (r["student"], r["training_set"], r["setting"], r["k"], r["metric"])
        == (student, label, setting, k, metric)
    ]
    return next((r for r in found if r["seed"] == "mean"), found[0] if len(found) == 1 else None)
