"""The figures of an evaluation's ``results.json``, and the reading of its cells that the report and the Hub
push share (this module is the bottom of ``skillmix.evaluation``'s reporting: ``report`` and ``hub`` import
it, it imports neither).

:func:`plot_results` draws one PNG per metric (``full_marks.png``, ``all_skills.png``,
``skill_fraction.png``): one panel per setting present in any run (train, held-out, all), x = k, y = the
metric's mean with standard-error bars, one line per run with a legend. The same function draws the
figures of one run (``plots/`` of an evaluation folder) and of a comparison of several runs.

Matplotlib is imported only when the figures are drawn; they are built with the object API on the Agg
canvas (no pyplot state, as :mod:`skillmix.release.figures`), one colour per run, and saved without the
Software metadata, so equal results give equal bytes. Nothing is computed here: the values are the means
and standard errors of ``results.json`` (a metric is computed in :mod:`skillmix.metrics` only).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skillmix.metrics import METRICS
from skillmix.sampling import SETTINGS

DISPLAY_NAMES: dict[str, str] = {
    "full_marks": "Ratio of Full Marks",
    "all_skills": "Ratio of All Skills",
    "skill_fraction": "Skill Fraction",
}
DPI = 100
_SAVE = {"dpi": DPI, "format": "png", "metadata": {"Software": None}}


# ---------------------------------------------------------------------- reading results.json


def display_name(metric: str) -> str:
    return DISPLAY_NAMES.get(metric, metric)


def ordered_settings(settings: Iterable[str]) -> list[str]:
    """The settings in the protocol's order (train, held-out, all), unknown ones after them, sorted."""
    known = {name: i for i, name in enumerate(SETTINGS)}
    return sorted(set(settings), key=lambda s: (known.get(s, len(known)), s))


def ordered_keys(keys: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """(k, setting) keys by k, then in the protocol's order of settings."""
    keys = set(keys)
    order = ordered_settings(setting for _, setting in keys)
    return sorted(keys, key=lambda key: (key[0], order.index(key[1])))


def cells(results: dict[str, Any]) -> dict[tuple[int, str], dict[str, Any]]:
    """``{(k, setting): row}`` of the ``results`` list of a results.json dict."""
    return {(int(row["k"]), str(row["setting"])): row for row in results.get("results") or []}


def summary(row: dict[str, Any] | None, metric: str) -> dict[str, float] | None:
    """The metric's ``{mean, stderr, ci_low, ci_high}`` of one row, or None when it has no finite mean."""
    found = (row or {}).get(metric)
    if not isinstance(found, dict) or not finite(found.get("mean")):
        return None
    return found


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------- figures


def plot_results(runs: list[tuple[str, dict[str, Any]]], out_dir: Path) -> list[Path]:
    """Draw one figure per metric of ``runs`` ([(label, results.json dict)]) into ``out_dir``; the paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    settings = ordered_settings(setting for _, results in runs for _, setting in cells(results))
    written = []
    for metric in METRICS:
        figure = _metric_figure(runs, metric, settings)
        path = folder / f"{metric}.png"
        figure.savefig(path, **_SAVE)
        written.append(path)
    return written


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _metric_figure(runs: list[tuple[str, dict[str, Any]]], metric: str, settings: list[str]) -> Any:
    panels = settings or ["(no results)"]
    figure = _new_figure(max(4.0, 3.6 * len(panels)), 3.8)
    figure.suptitle(f"Skill-Mix: {display_name(metric)}")
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, setting in zip(axes, panels, strict=True):
        _panel(ax, runs, metric, setting)
    axes[0].set_ylabel(display_name(metric))
    if settings and runs:
        axes[-1].legend(loc="best", fontsize="small")
    return figure


def _panel(ax: Any, runs: list[tuple[str, dict[str, Any]]], metric: str, setting: str) -> None:
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    ax.set_title(setting)
    ax.set_xlabel("k (skills per text)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for i, (label, results) in enumerate(runs):
        found = {k: summary(row, metric) for (k, s), row in cells(results).items() if s == setting}
        points = sorted((k, value) for k, value in found.items() if value is not None)
        xs = [k for k, _ in points]
        ys = [value["mean"] for _, value in points]
        errors = [value["stderr"] if finite(value.get("stderr")) else 0.0 for _, value in points]
        ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=label, color=colormaps["tab10"](i % 10))
