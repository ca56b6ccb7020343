"""Writing an evaluation's files (:mod:`skillmix.evaluation.files`), and ``skillmix eval rescore``: every
result again from ``samples.jsonl`` with no request, the text checks optionally switched off."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError
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
from skillmix.rules import ScoringRules


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
    """Every result again from ``samples.jsonl``, with no request, under the recorded scoring rules with the
    ones given (not None) replaced: the text checks switched, the rule for a generation with no parseable
    grade changed. The protocol records the replaced keys; the others stay as they were recorded."""
    results = read_results(folder)
    samples = read_samples(folder)
    protocol = dict(results["protocol"])
    recorded = ScoringRules.from_config(protocol, f"{folder / RESULTS}: protocol")
    given = {"name_penalty": name_penalty, "length_override": length_override, "unparseable": unparseable}
    changed = {key: value for key, value in given.items() if value is not None}
    try:
        rules = replace(recorded, **changed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    protocol.update(changed)
    scored = score_samples(samples, protocol["grader_runs"], protocol["generations"], rules)
    results = {**results, "protocol": protocol, "results": scored}
    write_results(folder, results)
    return results
