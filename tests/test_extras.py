"""The pins resolve: ``pip install '.[train,gpu]'`` as pip's dry run (the package index, no install), and the
reason vLLM is not in the ``gpu`` extra, read from vLLM's own metadata: no release TRL 1.16 can use accepts
the train extra's transformers; and the default install with the ``inspect`` extra beside it, which must move
no version of the default one. Needs the package index (the network or a mirror): slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution")
pytestmark = pytest.mark.slow


def dry_run(tmp_path: Path, *requirements: str, no_deps: bool = False) -> dict:
    """pip's report of what ``pip install`` would install; flash-attn's setup needs the torch installed
    here (no build isolation) and builds nothing (FLASH_ATTENTION_SKIP_CUDA_BUILD)."""
    report = tmp_path / "report.json"
    options = ["--dry-run", "--ignore-installed", "--quiet", "--no-build-isolation", "--report", str(report)]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        *options,
        *(["--no-deps"] if no_deps else []),
        *requirements,
    ]
    env = {**os.environ, "FLASH_ATTENTION_SKIP_CUDA_BUILD": "TRUE", "DS_BUILD_OPS": "0"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode and any(reason in done.stderr for reason in UNREACHABLE):
        pytest.skip("the package index cannot be reached")
    assert done.returncode == 0, done.stderr[-3000:]
    return {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"] for item in
            json.loads(report.read_text())["install"]}  # fmt: skip


def test_train_and_gpu_extras_resolve_together(tmp_path):  # 76 s on the 2-core machine (sdists' metadata)
    from packaging.version import Version

    resolved = dry_run(tmp_path, ".[train,gpu]")
    versions = {name: Version(meta["version"]).base_version for name, meta in resolved.items()}
    pinned = {"torch": "2.13.0", "transformers": "5.23.0", "trl": "1.16.0", "accelerate": "1.15.0",
              "deepspeed": "0.19.8", "peft": "0.21.2"}  # fmt: skip
    assert {name: versions.get(name) for name in pinned} == pinned
    assert versions.get("flash-attn") == "2.8.3" and "vllm" not in versions


@pytest.mark.parametrize("release", ["0.31.0", "0.34.0"])  # TRL 1.16's newest supported; the newest
def test_no_vllm_release_accepts_the_train_extras_transformers(release, tmp_path):
    from packaging.requirements import Requirement

    (meta,) = dry_run(tmp_path, f"vllm=={release}", no_deps=True).values()
    (transformers,) = [Requirement(r) for r in meta["requires_dist"] if Requirement(r).name == "transformers"]
    assert "5.23.0" not in transformers.specifier, transformers


DEFAULT = "dev,pipeline,hub,train,review"  # the Makefile's install


def test_the_default_and_the_inspect_installs_agree(tmp_path):  # 28 s on the 2-core machine, pip cache warm
    """``.[inspect]`` beside the default install moves nothing the default install has (inspect-ai caps
    fsspec and, through botocore, python-dateutil: both pinned in every extra that pulls them)."""
    default = dry_run(tmp_path, f".[{DEFAULT}]")
    with_inspect = dry_run(tmp_path, f".[{DEFAULT},inspect]")
    moved = {name: (meta["version"], with_inspect[name]["version"]) for name, meta in default.items()
             if name in with_inspect and with_inspect[name]["version"] != meta["version"]}  # fmt: skip
    assert moved == {}
    assert set(default) <= set(with_inspect) and with_inspect["inspect-ai"]["version"] == "0.3.285"
    assert default["openai"]["version"] == "3.4.0" and default["fsspec"]["version"] == "2026.6.0"
