"""The figures of a dataset card, drawn from the dict of :func:`skillmix.release.stats.dataset_stats`.

:func:`make_figures` writes two PNG files into ``out_dir / "figures"``:

* ``score_distribution.png``: for each k, the share of graded texts (kept + rejected) by the number of
  decided points earned, grouped bars on 0 .. max(k)+3 points;
* ``skill_coverage.png``: uses of each skill in kept rows, horizontal bars stacked by k, skills sorted by
  total use (most used at the top), so that all 101 skills of the catalog stay readable.

Matplotlib is imported only when the figures are drawn. The figures are built with the object API on
the Agg canvas (no pyplot, so no global backend switch and no figure left open), one colour per k (the
same in both figures), and saved without the Software metadata, so equal stats give equal bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURES_DIR = "figures"
DPI = 100
_SAVE = {"dpi": DPI, "format": "png", "metadata": {"Software": None}}


def make_figures(stats: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Draw the card's figures into ``out_dir / "figures"``; return {name: path relative to out_dir}."""
    folder = Path(out_dir) / FIGURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    drawings = {"score_distribution": _score_distribution, "skill_coverage": _skill_coverage}
    written = {}
    for name, draw in drawings.items():
        figure = draw(stats)
        figure.savefig(folder / f"{name}.png", **_SAVE)
        written[name] = f"{FIGURES_DIR}/{name}.png"
    return written


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _k_keys(stats: dict[str, Any], section: str) -> list[str]:
    """The "k<n>" keys of a section of the stats, in increasing k."""
    return sorted(stats.get(section) or {}, key=lambda key: int(key[1:]))


def _colour(key: str) -> Any:
    from matplotlib import colormaps

    return colormaps["tab10"]((int(key[1:]) - 1) % 10)


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _score_distribution(stats: dict[str, Any]) -> Any:
    histograms = {key: stats["score_distribution"][key] for key in _k_keys(stats, "score_distribution")}
    histograms = {key: h for key, h in histograms.items() if sum(h.values())}
    figure = _new_figure(7.5, 4.2)
    ax = figure.add_subplot()
    ax.set_title("Decided points earned per graded text (kept + rejected)")
    ax.set_xlabel("points earned (of k+3)")
    ax.set_ylabel("share of graded texts")
    if not histograms:
        _empty(ax, "no graded texts")
        return figure
    top = max(int(n) for h in histograms.values() for n in h)
    width = 0.8 / len(histograms)
    for i, (key, histogram) in enumerate(histograms.items()):
        total = sum(histogram.values())
        xs = [int(n) for n in histogram]
        shares = [count / total for count in histogram.values()]
        offset = (i - (len(histograms) - 1) / 2) * width
        k = int(key[1:])
        ax.bar(
            [x + offset for x in xs],
            shares,
            width=width,
            color=_colour(key),
            label=f"k={k} (n={total}, full marks = {k + 3})",
        )
    ax.set_xticks(range(top + 1))
    ax.set_xlim(-0.6, top + 0.6)
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", fontsize="small")
    return figure


def _skill_coverage(stats: dict[str, Any]) -> Any:
    usage: dict[str, dict[str, int]] = stats.get("skill_usage") or {}
    keys = sorted({key for counts in usage.values() for key in counts}, key=lambda key: int(key[1:]))
    totals = {skill: sum(counts.values()) for skill, counts in usage.items()}
    skills = sorted(usage, key=lambda skill: (-totals[skill], skill))[::-1]  # most used at the top
    height = min(max(3.0, 0.16 * len(skills) + 1.4), 40.0)
    figure = _new_figure(8.0, height)
    ax = figure.add_subplot()
    ax.set_title("Skill use in kept rows, stacked by k")
    ax.set_xlabel("kept rows using the skill")
    ax.set_ylabel("skill (most used at the top)")
    if not skills:
        _empty(ax, "no skills")
        return figure
    positions = range(len(skills))
    left = [0] * len(skills)
    for key in keys:
        values = [usage[skill].get(key, 0) for skill in skills]
        ax.barh(positions, values, left=left, height=0.8, color=_colour(key), label=f"k={key[1:]}")
        left = [a + b for a, b in zip(left, values, strict=True)]
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_yticks(list(positions), skills, fontsize=6 if len(skills) > 40 else 8)
    ax.set_ylim(-0.6, len(skills) - 0.4)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if max(left) == 0:
        ax.set_xlim(0, 1)
    if keys:
        ax.legend(loc="lower right", fontsize="small")
    return figure
