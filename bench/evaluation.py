"""Evaluation throughput of ``skillmix eval`` with an OpenAI-compatible student and judge at a fixed latency.

    python bench/evaluation.py [--n 150] [--k 2,3] [--generations 3] [--concurrency 30] [--latency 0.5]

Each generation needs 5 requests (the student's two rounds, three grader runs), so with ``C`` requests in
flight and a latency of ``L`` seconds the bound is ``C / (5 L)`` generations/s. The evaluation runs as a
user runs it (:func:`skillmix.evaluation.run.run_eval`: checks, student, pipeline, scoring, files) against
the fake server in its own process, and the script prints generations/s and the ratio to the bound: end to
end (everything, distilabel's start-up included) and steady (between the first and last request).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from generation import ServerProcess

from skillmix.evaluation.config import build_eval_config
from skillmix.evaluation.run import run_eval

REQUESTS_PER_GENERATION = 5  # round 1, round 2, three grader runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=150, help="combinations per k")
    parser.add_argument("--k", default="2,3")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.5)
    args = parser.parse_args(argv)
    os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")
    bound = args.concurrency / (args.latency * REQUESTS_PER_GENERATION)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = ServerProcess(args.latency, workdir / "requests.jsonl")
        config = build_eval_config(
            overrides={
                "student": {"model": "fake-teacher", "base_url": server.base_url},
                "judge": {"model": "fake-teacher", "base_url": server.base_url},
                "k": args.k,
                "setting": "held-out",
                "n": args.n,
                "generations": args.generations,
                "client": {"concurrency": args.concurrency},
            }
        )
        started = time.monotonic()
        results = run_eval(config, workdir / "eval", log=lambda m: None)
        wall = time.monotonic() - started
        time.sleep(0.2)
        records = server.records()
        server.stop()
    generations = sum(r["generations"] for r in results["results"])
    at = [r["at"] for r in records]
    window = max(at) - min(at) + args.latency
    out = {
        "generations": generations,
        "requests": len(records),
        "wall_s": round(wall, 2),
        "generations_per_s": round(generations / wall, 2),
        "steady_generations_per_s": round(generations / window, 2),
        "bound_generations_per_s": round(bound, 2),
        "ratio": round(generations / wall / bound, 3),
        "steady_ratio": round(generations / window / bound, 3),
    }
    print(json.dumps(out), flush=True)
    print(
        f"# {generations} generations ({args.n} combinations x k={args.k} x {args.generations}), latency "
        f"{args.latency}s, concurrency {args.concurrency}: bound {bound:.2f}/s; end to end "
        f"{out['generations_per_s']:.2f}/s ({out['ratio']:.1%}), "
        f"steady {out['steady_ratio']:.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
