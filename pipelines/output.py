"""The output folder of a dataset build, in Hugging Face layout, and the run's bookkeeping.

::

    OUT/
      README.md                         card with the `configs:` that `load_dataset(OUT, "k3")` reads
      manifest.json                     config, seeds, split hashes, versions, counts, tokens, cost, time
      k3/train-00000-of-00001.parquet   kept (full-mark) rows, one config per k
      rejected/train-...parquet         graded rows that missed a point, with the points that failed
      failed/train-...parquet           rows with no usable generation or grade, with the reason
      .skillmix/                        run state: request cache, distilabel scratch, server log

Empty configs are left out of the card (``datasets`` cannot load a Parquet file with zero rows). Files are
written to ``.skillmix/staging`` first and moved into place at the end, so a crash never leaves a
half-written dataset, and a folder that holds another run's data is refused before anything is touched.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from skillmix.pipelines.config import ConfigError, DatasetConfig
from skillmix.prompts import PromptSet
from skillmix.release.stats import failures_by_reason
from skillmix.splits import Split

RUN_FILE = "run.json"
CACHE_FILE = "cache.sqlite"
CARD_TEMPLATE = "dataset_folder.md.jinja2"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("skillmix", "distilabel", "openai", "datasets", "pyarrow", "huggingface-hub"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


@dataclass
class RunResult:
    config: DatasetConfig
    models: tuple[Any, ...]
    split: Split
    rows: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0

    def add(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(rows)

    def of_k(self, k: int) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["k"] == k]

    def kept(self, k: int) -> int:
        return sum(r["outcome"] == "kept" for r in self.of_k(k))

    def graded(self, k: int) -> int:
        return sum(r["outcome"] in ("kept", "rejected") for r in self.of_k(k))

    def acceptance(self, k: int) -> float:
        graded = [r for r in self.of_k(k) if r["outcome"] in ("kept", "rejected")]
        return sum(r["outcome"] == "kept" for r in graded) / len(graded) if graded else 0.0

    def split_kept(self, k: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The kept rows of ``k`` in draw order: the first ``--target-accepted`` of them, and the surplus."""
        kept = [r for r in self.of_k(k) if r["outcome"] == "kept"]
        target = self.config.target_accepted
        return (kept, []) if target is None else (kept[:target], kept[target:])

    def surplus_ids(self) -> set[str]:
        return {r["id"] for k in self.config.k for r in self.split_kept(k)[1]}

    def counts(self) -> dict[str, Any]:
        per_k = {}
        for k in self.config.k:
            rows = self.of_k(k)
            outcomes = Counter(r["outcome"] for r in rows)
            kept, surplus = self.split_kept(k)
            per_k[f"k{k}"] = {
                "sampled": len(rows),
                "kept": len(kept),
                "surplus": len(surplus),
                "rejected": outcomes["rejected"],
                "failed": outcomes["failed"],
                "failed_generation": sum(
                    r["outcome"] == "failed" and str(r.get("failure_reason", "")).startswith("round")
                    for r in rows
                ),
                "acceptance_rate": round(self.acceptance(k), 4),
            }
            shortfall = self.shortfall(k)
            if shortfall:
                per_k[f"k{k}"]["shortfall"] = shortfall
        failed = [r for r in self.rows if r["outcome"] == "failed"]
        surplus_ids = self.surplus_ids()
        surplus_usd = sum(_row_usd(r) for r in self.rows if r["id"] in surplus_ids)
        return {
            "per_k": per_k,
            "failures_by_reason": failures_by_reason(failed),
            "surplus_usd": round(surplus_usd, 6),
        }

    def shortfall(self, k: int) -> str | None:
        """Why fewer than ``--target-accepted`` rows of ``k`` were kept (None when the target was met)."""
        target = self.config.target_accepted
        if target is None or self.kept(k) >= target:
            return None
        if any(r.get("status") == "budget" for r in self.of_k(k)):
            return f"kept {self.kept(k)} of {target}: the spending limit was reached"
        return f"kept {self.kept(k)} of {target}: no combinations left to draw"

    def usage(self) -> dict[str, Any]:
        totals: dict[str, dict[str, float]] = {}
        for row in self.rows:
            for stage, model in (("round1", "teacher"), ("round2", "teacher"), ("grader", "judge")):
                entries = row.get(f"{stage}_usage") or []
                for entry in entries if isinstance(entries, list) else [entries]:
                    if not entry:
                        continue
                    t = totals.setdefault(model, {"input_tokens": 0, "output_tokens": 0, "usd": 0.0})
                    t["input_tokens"] += entry.get("input_tokens") or 0
                    t["output_tokens"] += entry.get("output_tokens") or 0
                    t["usd"] += entry.get("usd") or 0.0
        return totals


def _row_usd(row: dict[str, Any]) -> float:
    entries = [row.get("round1_usage"), row.get("round2_usage"), *(row.get("grader_usage") or [])]
    return sum((entry or {}).get("usd") or 0.0 for entry in entries)


class OutputFolder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.work = path / ".skillmix"

    def claim(self, config: DatasetConfig) -> None:
        """Take the folder for this run: new, empty, or holding this same run (then resume)."""
        run_file = self.work / RUN_FILE
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"output {self.path} exists and is not a folder")
        if run_file.is_file():
            previous = json.loads(run_file.read_text())
            if previous.get("fingerprint") != config.fingerprint():
                raise ConfigError(
                    f"output folder {self.path} holds another run's data (different settings); "
                    "choose another OUT= / --out or remove it"
                )
        elif self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(f"output folder {self.path} is not empty and holds no skillmix run")
        self.work.mkdir(parents=True, exist_ok=True)
        run_file.write_text(json.dumps({"fingerprint": config.fingerprint(), "config": config.to_dict()}))

    def write(self, result: RunResult) -> None:
        from skillmix.pipelines.card import render_folder_card
        from skillmix.pipelines.rows import to_records, write_parquet

        staging = self.work / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        prompts = PromptSet(result.config.template_dir)
        records = to_records(result, prompts)
        configs: dict[str, list[dict[str, Any]]] = {}
        surplus = result.surplus_ids()
        for k in result.config.k:
            configs[f"k{k}"] = [
                r for r in records if r["k"] == k and r["outcome"] == "kept" and r["id"] not in surplus
            ]
        configs["surplus"] = [r for r in records if r["id"] in surplus]
        configs["rejected"] = [r for r in records if r["outcome"] == "rejected"]
        configs["failed"] = [r for r in records if r["outcome"] == "failed"]
        written = {}
        for name, rows in configs.items():
            if rows:  # datasets cannot load a zero-row Parquet file: leave empty configs out
                relative = f"{name}/train-00000-of-00001.parquet"
                write_parquet(rows, staging / relative)
                written[name] = {"path": relative, "rows": len(rows)}
        manifest = self.manifest(result, prompts, written)
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        (staging / "README.md").write_text(render_folder_card(manifest))
        for name in ("rejected", "failed", "surplus", *(f"k{k}" for k in range(1, 100))):
            stale = self.path / name
            if stale.is_dir() and name not in written:
                shutil.rmtree(stale)
        for source in sorted(staging.rglob("*")):
            if source.is_file():
                target = self.path / source.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
        shutil.rmtree(staging, ignore_errors=True)

    def manifest(self, result: RunResult, prompts: PromptSet, written: dict[str, Any]) -> dict[str, Any]:
        config = result.config
        usage = result.usage()
        return {
            "skillmix_manifest": 1,
            "preset": config.preset,
            "config": config.to_dict(),
            "fingerprint": config.fingerprint(),
            "seeds": {
                "sampling": config.seed,
                "split": config.split_seed,
                "teacher": config.teacher.seed,
                "judge": config.judge.seed,
            },
            "split": {
                "seed": result.split.seed,
                "hash": result.split.hash,
                "skills_hash": result.split.skills_hash,
                "topics_hash": result.split.topics_hash,
                "catalog_hash": result.split.catalog_hash,
            },
            "models": {
                m.role: {
                    "model": m.model,
                    "endpoint": "embedded" if m.free else (m.base_url or "openai"),
                    "embedded": m.free,
                }
                for m in result.models
            },
            "prompt_hashes": prompts.hashes(),
            "versions": _versions(),
            "counts": result.counts(),
            "configs": written,
            "usage": usage,
            "cost_usd": round(sum(u["usd"] for u in usage.values()), 6),
            "wall_seconds": round(result.wall_seconds, 2),
            "embedded": any(m.free for m in result.models),
        }
