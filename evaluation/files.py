"""The files of an evaluation folder, read and written in one place.

* ``samples.jsonl``: one line per generation (:func:`skillmix.evaluation.run.sample_record`);
* ``results.json``: for machines (student, judge, protocol, one result per k and setting);
* ``results.md``: the papers' table (rows k, columns setting x metric, mean ± s.e.);
* ``plots/``: each metric against k, one panel per setting.

Each file is written beside its final name and renamed over it, so that a crash leaves the previous file
or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from skillmix.config import ConfigError

SAMPLES, RESULTS, REPORT, PLOTS = "samples.jsonl", "results.json", "results.md", "plots"


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def read_results(folder: Path) -> dict[str, Any]:
    """``folder/results.json`` as a dict; ConfigError (one line) when it is missing or is not one."""
    path = Path(folder) / RESULTS
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} does not load: {str(exc).splitlines()[0]}") from None
    if not isinstance(results, dict) or not isinstance(results.get("results"), list):
        raise ConfigError(f"{path} is not the results.json of `skillmix eval` (no 'results' list)")
    return results


def read_samples(folder: Path) -> list[dict[str, Any]]:
    """Every line of ``folder/samples.jsonl``; ConfigError (one line) naming a line that does not parse."""
    path = Path(folder) / SAMPLES
    if not path.is_file():
        raise ConfigError(f"{folder} holds no {SAMPLES}: not an evaluation folder")
    samples = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            samples.append(json.loads(line))
        except ValueError:
            raise ConfigError(f"{path} line {number} does not parse") from None
    return samples
