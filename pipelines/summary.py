"""The end-of-run summary table: generated, graded, kept per k, acceptance, failures, tokens, cost, time."""

from __future__ import annotations

from typing import Any

from skillmix.dataset_folder.layout import config_path


def summary_text(manifest: dict[str, Any], out: str) -> str:
    lines = [f"Skill-Mix dataset written to {out}", ""]
    header = (
        f"{'k':>3} {'sampled':>8} {'generated':>10} {'graded':>7} {'kept':>6} {'surplus':>8} {'rejected':>9} "
        f"{'failed':>7} {'accept':>7}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for name, c in manifest["counts"]["per_k"].items():
        surplus = c.get("surplus", 0)
        graded = c["kept"] + surplus + c["rejected"]
        generated = c["sampled"] - c.get("failed_generation", 0)
        lines.append(
            f"{name[1:]:>3} {c['sampled']:>8} {generated:>10} {graded:>7} {c['kept']:>6} {surplus:>8} "
            f"{c['rejected']:>9} {c['failed']:>7} {100 * c['acceptance_rate']:>6.1f}%"
        )
    lines.extend(
        f"k={name[1:]}: {c['shortfall']}"
        for name, c in manifest["counts"]["per_k"].items()
        if c.get("shortfall")
    )
    failures = manifest["counts"]["failures_by_reason"]
    if failures:
        lines.append("")
        lines.append("failures by reason:")
        lines.extend(f"  {count:>5}  {reason}" for reason, count in failures.items())
    errored = manifest["counts"].get("errored")
    if errored:
        lines.append(f"  {errored} of them stopped by the infrastructure (api_error, not the model's doing): "
                     "run the same command again to retry only those")  # fmt: skip
    lines.append("")
    for role, u in manifest["usage"].items():
        lines.append(
            f"{role:<8} {u['input_tokens']:>10,} tokens in {u['output_tokens']:>10,} out  ${u['usd']:.4f}"
        )
    lines.append(
        f"cost ${manifest['cost_usd']:.4f}   wall time {manifest['wall_seconds']:.1f} s{over_runs(manifest)}"
    )
    if manifest["config"].get("target_accepted") is not None:
        surplus_usd = manifest["counts"].get("surplus_usd", 0.0)
        lines.append(
            f"overshoot ${surplus_usd:.4f} spent on rows kept beyond --target-accepted (config `surplus`)"
        )
    cap = manifest["config"]["client"].get("max_usd")
    if cap is not None:
        lines.append(f"spending limit ${cap:.2f}: spent ${manifest['cost_usd']:.4f}")
    missed = manifest["counts"].get("rejected_by_item") or {}
    if missed:
        item, rows = next(iter(missed.items()))
        others = ", ".join(f"{kind} {count}" for kind, count in list(missed.items())[1:])
        detail = f"{rows} rows" + (f"; {others}" if others else "")
        lines.append(f"rejected rows missed {item} most often ({detail})")
    lines.extend(next_steps(manifest, out))
    if manifest.get("embedded"):
        judge = manifest.get("judge") or {}
        lines.append("")
        lines.append(
            "Note: the embedded Gemma 3 270M base model was teacher and judge. Its texts and grades are poor;"
            " use a GPT-4-class teacher and judge for real data."
        )
        if judge.get("temperature") is not None:
            lines.append(
                f"Its grader runs sampled at temperature {judge['temperature']:g} (a smoke-only setting; the "
                "protocol's 0.7 left half of its grades unparseable)."
            )
    return "\n".join(lines)


def over_runs(manifest: dict[str, Any]) -> str:
    """After the folder's totals: over how many runs, and what the last one cost."""
    runs = manifest.get("runs") or {}
    last = runs.get("last_run")
    if not last or runs.get("count", 1) == 1:
        return ""
    return f"   (over {runs['count']} runs; the last: ${last['cost_usd']:.4f}, {last['wall_seconds']:.1f} s)"


def next_steps(manifest: dict[str, Any], out: str) -> list[str]:
    """Where to go from here: load the data, read the card, release it.

    The load hint names the config's Parquet file, not ``load_dataset(out, config)``: ``datasets`` 5.2
    caches a local folder's configs by the folder's name, the config's name and the card's YAML, not by the
    files' contents, so after a rebuild into the same folder that form can return the old rows (reproduced,
    tests/test_summary.py). The ``parquet`` builder keys its cache on the files' modification times."""
    configs = [name for name in manifest["configs"] if name.startswith("k")] or list(manifest["configs"])
    first = configs[0] if configs else "k1"
    return [
        "",
        "next:",
        f'  load:    datasets.load_dataset("parquet", data_files="{out}/{config_path(first)}", split="train")'
        + (f"   (configs: {', '.join(manifest['configs'])})" if manifest["configs"] else ""),
        f"  card:    {out}/README.md",
        f"  release: skillmix publish --data {out} --repo ORG/NAME --version v1.0.0",
    ]
