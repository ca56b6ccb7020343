"""Writing an evaluation's files (:mod:`skillmix.evaluation.files`), and ``skillmix eval rescore``: every
result again from ``samples.jsonl`` with no request, the text checks optionally switched off."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skillmix.evaluation.files import (
    PLOTS,
    REPORT,
    RESULTS,
    SAMPLES,
    read_results,
    read_samples,
    write_text_atomic,
)
from skillmix.evaluation.score import score_samples


def write_outputs(folder: Path, samples: Iterable[dict[str, Any]], results: dict[str, Any]) -> None:
    lines = "".join(json.dumps(sample, ensure_ascii=False) + "\n" for sample in samples)
    write_text_atomic(folder / SAMPLES, lines)
    write_results(folder, results)


def write_results(folder: Path, results: dict[str, Any]) -> None:
    from skillmix.evaluation.plots import plot_results
    from skillmix.evaluation.report import render_results_md

    write_text_atomic(folder / RESULTS, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_text_atomic(folder / REPORT, render_results_md(results))
    plot_results([(results["student"].get("model") or "student", results)], folder / PLOTS)


def rescore(
    folder: Path,
    name_penalty: bool | None = None,
    length_override: bool | None = None,
    unparseable: str | None = None,
) -> dict[str, Any]:
    """Every result again from ``samples.jsonl``, with no request; the text checks may be switched off and
    the rule for a generation with no parseable grade changed."""
    results = read_results(folder)
    samples = read_samples(folder)
    protocol = dict(results["protocol"])
    if name_penalty is not None:
        protocol["name_penalty"] = name_penalty
    if length_override is not None:
        protocol["length_override"] = length_override
    if unparseable is not None:
        protocol["unparseable"] = unparseable
    scored = score_samples(
        samples,
        protocol["grader_runs"],
        protocol["generations"],
        protocol["length_override"],
        protocol["name_penalty"],
        protocol.get("unparseable", "zero"),
    )
    results = {**results, "protocol": protocol, "results": scored}
    write_results(folder, results)
    return results
