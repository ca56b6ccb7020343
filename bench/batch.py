"""The bill of the same dataset built direct and batched, in one run, against the fake server.

    python bench/batch.py [--n 50] [--k 2,3] [--turnaround 2]

Both builds run the same command (``skillmix dataset``, seed 0, the same scripted teacher and judge) into
two folders, the second with ``--teacher-batch --judge-batch``; the server's batch API answers each batch
``--turnaround`` seconds after it is created. What is billed is computed from the usage the server reported
(direct requests and batch lines apart) at the built-in price of ``gpt-4o`` (the fake model is priced as
gpt-4o through ``--prices``; batch lines at the 50% rule); the ratio batched / direct is expected to be
0.5. Wall times are printed beside the turnaround: a batched build waits about three turnarounds (round 1,
round 2, grading) plus the passes of the pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skillmix.llm.prices import BATCH_DISCOUNT, BUILTIN_PRICES
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder
from skillmix.testing.fake_openai.batches import BatchBehaviour

PRICE = BUILTIN_PRICES["gpt-4o"]


def dollars(totals: dict, share: float = 1.0) -> float:
    usage = totals.get("fake-teacher", {"prompt_tokens": 0, "completion_tokens": 0})
    return share * (usage["prompt_tokens"] * PRICE[0] + usage["completion_tokens"] * PRICE[1]) / 1e6


def build(server: FakeOpenAIServer, out: Path, prices: Path, args: argparse.Namespace, *extra: str) -> float:
    roles = ["--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url, "--judge-base-url",
             server.base_url]  # fmt: skip
    sizes = ["--k", args.k, "--n", str(args.n)]
    cmd = [sys.executable, "-m", "skillmix.cli", "dataset", "--out", str(out), *sizes, *roles, "--prices",
           str(prices), *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["SKILLMIX_BATCH_POLL_SECONDS"] = "0.5"
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"the build into {out} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--n", type=int, default=50, help="combinations per k")
    parser.add_argument("--k", default="2,3")
    parser.add_argument("--turnaround", type=float, default=2.0, help="seconds until a batch is done")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAIServer(
            responder=SkillMixResponder(seed=0, accept_rate=0.6),
            batches=BatchBehaviour(turnaround=args.turnaround),
        ) as server,
    ):
        prices = Path(tmp) / "prices.yaml"
        prices.write_text(f"fake-teacher: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n")
        direct_wall = build(server, Path(tmp) / "direct", prices, args)
        direct = dollars(server.usage_totals())
        batched_wall = build(server, Path(tmp) / "batched", prices, args, "--teacher-batch", "--judge-batch")
        batched = dollars(server.batch_api.usage_totals(), BATCH_DISCOUNT)
        manifests = [
            json.loads((Path(tmp) / name / "manifest.json").read_text()) for name in ("direct", "batched")
        ]
        batches = len(server.batch_api.created())
    print(f"{args.n} combinations per k (k={args.k}), gpt-4o prices, turnaround {args.turnaround:g} s")
    print(f"  direct : billed ${direct:.4f} (manifest ${manifests[0]['cost_usd']:.4f}), {direct_wall:.1f} s")
    recorded = manifests[1]["cost_usd"]
    wall = f"{batched_wall:.1f} s"
    print(f"  batched: billed ${batched:.4f} (manifest ${recorded:.4f}), {wall}, {batches} batches")
    print(f"  ratio batched / direct: {batched / direct:.3f} (expected {BATCH_DISCOUNT})")
    print(f"  wall: batched {batched_wall:.1f} s = {batched_wall / args.turnaround:.1f} turnarounds; "
          f"direct {direct_wall:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
