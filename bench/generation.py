"""Generation throughput of the Skill-Mix pipeline against a loopback server with a fixed latency.

    python bench/generation.py [--samples 2500] [--stock-samples 300] [--concurrency 30] [--latency 0.5]

A sample needs 5 requests (round 1, round 2, 3 grader runs), so with ``C`` requests in flight and a
latency of ``L`` seconds the ideal is ``C / (5 L)`` samples/s. The script runs the same pipeline twice in
one process against one server: with skillmix's ``SkillMixLLM`` (concurrency ``C`` split over the stages,
large batches) and with distilabel's stock ``OpenAILLM`` (which bounds nothing: its concurrency is the
batch size times the generations, so batches are sized to put the same ``C`` requests in flight), and
prints samples/s, the ideal, and their ratio: end to end (wall time of ``pipeline.run``, start-up
included) and steady (between the first and last request the server saw).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from skillmix.catalog import load_catalog
from skillmix.llm.roles import ResolvedModel
from skillmix.pipelines.config import build_config
from skillmix.pipelines.dataset import build_pipeline, stage_concurrency
from skillmix.pipelines.driver import pipeline_row
from skillmix.sampling import sample_combinations
from skillmix.testing.fake_openai import CHAT_PATH

REQUESTS_PER_SAMPLE = 5  # round 1, round 2, three grader runs


def stock_pipeline(config, rows, base_url: str, workdir: Path, concurrency: int):
    """The same stages with distilabel's OpenAILLM, batches sized for ``concurrency`` requests in flight."""
    from distilabel.models.llms import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts

    from skillmix.pipelines.steps import DecidePoints
    from skillmix.pipelines.tasks import GenerateRound1, GenerateRound2, GradeText

    share = stage_concurrency(config.model_copy(update={"batch_size": 1}), len(rows))  # stages overlap: split
    scale = concurrency / sum(share.values())

    def llm(temperature: float):
        return OpenAILLM(
            model="fake-teacher",
            base_url=base_url,
            api_key="bench",
            max_retries=0,
            generation_kwargs={"temperature": temperature, "max_new_tokens": 300},
        )

    batch1 = max(1, round(share["round1"] * scale))
    batch_grade = max(1, round(share["grade"] * scale / config.grader_runs))
    common = {"add_raw_output": False, "add_raw_input": False}
    with Pipeline(name="bench-stock", cache_dir=str(workdir / "stock")) as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=batch1)
        r1 = GenerateRound1(name="round1", llm=llm(0.7), input_batch_size=batch1, **common)
        r2 = GenerateRound2(name="round2", llm=llm(0.7), input_batch_size=batch1, **common)
        grade = GradeText(
            name="grade",
            llm=llm(0.0),
            num_generations=config.grader_runs,
            group_generations=True,
            input_batch_size=batch_grade,
            **common,
        )
        decide = DecidePoints(name="decide", rules=config.scoring_rules, input_batch_size=batch1)
        load >> r1 >> r2 >> grade >> decide
    return pipeline


class ServerProcess:
    """The fake server in its own process (so its threads do not take the GIL from distilabel's
    coordinator), logging one JSON line per request."""

    def __init__(self, latency: float, log: Path) -> None:
        self.latency, self.log = latency, log
        cmd = [
            sys.executable,
            "-m",
            "skillmix.testing.fake_openai",
            "--port",
            "0",
            "--latency",
            str(latency),
            "--log",
            str(log),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        first = self.proc.stdout.readline().split()
        if len(first) != 2 or first[0] != "BASE_URL":
            raise RuntimeError(f"fake server did not start: {first}")
        self.base_url = first[1]

    def records(self) -> list[dict]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [r for r in map(json.loads, lines) if r.get("path", CHAT_PATH) == CHAT_PATH]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def measure(label: str, make_pipeline, server: ServerProcess, samples: int, ideal: float) -> dict:
    before = len(server.records())
    started = time.monotonic()
    distiset = make_pipeline().run(use_cache=False)
    wall = time.monotonic() - started
    time.sleep(0.2)
    records = server.records()[before:]
    rows = distiset["default"]["train"].to_list() if distiset else []
    at = [r["at"] for r in records]
    window = max(at) - min(at) + server.latency if records else wall
    ok = sum(r.get("outcome") in ("kept", "rejected") for r in rows)
    result = {
        "pipeline": label,
        "samples": samples,
        "graded": ok,
        "requests": len(records),
        "wall_s": round(wall, 2),
        "samples_per_s": round(samples / wall, 2),
        "steady_samples_per_s": round(samples / window, 2),
        "ideal_samples_per_s": round(ideal, 2),
        "ratio": round(samples / wall / ideal, 3),
        "steady_ratio": round(samples / window / ideal, 3),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--stock-samples", type=int, default=300, help="samples for the (slower) stock run")
    parser.add_argument("--concurrency", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the whole run in one batch")
    parser.add_argument("--skip-stock", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")

    ideal = args.concurrency / (args.latency * REQUESTS_PER_SAMPLE)
    catalog = load_catalog()
    combos = sample_combinations(catalog, 3, max(args.samples, args.stock_samples), seed=123)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = ServerProcess(args.latency, workdir / "requests.jsonl")
        config = build_config(
            "smoke",
            {"n": args.samples, "client": {"concurrency": args.concurrency}, "batch_size": args.batch_size},
        )
        model = ResolvedModel("teacher", "fake-teacher", server.base_url)
        models = (model, ResolvedModel("judge", "fake-teacher", server.base_url))
        print(
            f"# k=3, {REQUESTS_PER_SAMPLE} requests a sample, latency {args.latency}s, concurrency "
            f"{args.concurrency}: ideal {ideal:.2f} samples/s",
            flush=True,
        )
        ours = measure(
            "skillmix SkillMixLLM",
            lambda: build_pipeline(
                config, [pipeline_row(c) for c in combos[: args.samples]], models, workdir
            ),
            server,
            args.samples,
            ideal,
        )
        results = [ours]
        if not args.skip_stock:
            rows = [pipeline_row(c) for c in combos[: args.stock_samples]]
            results.append(
                measure(
                    "distilabel OpenAILLM",
                    lambda: stock_pipeline(config, rows, server.base_url, workdir, args.concurrency),
                    server,
                    args.stock_samples,
                    ideal,
                )
            )
        server.stop()
    print()
    print(f"{'pipeline':<24} {'samples/s':>10} {'steady':>8} {'ideal':>7} {'ratio':>7} {'steady':>8}")
    for r in results:
        print(
            f"{r['pipeline']:<24} {r['samples_per_s']:>10.2f} {r['steady_samples_per_s']:>8.2f} "
            f"{r['ideal_samples_per_s']:>7.2f} {r['ratio']:>7.1%} {r['steady_ratio']:>8.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
