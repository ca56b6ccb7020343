"""The command line of the fake server, :func:`main`: run by ``python -m skillmix.testing.fake_openai``
(see the package docstring), it prints ``BASE_URL <url>`` first and a JSON summary on SIGTERM or SIGINT;
``python -m skillmix.testing.fake_openai run-batch -i IN -o OUT --model M`` is the offline batch runner
(:mod:`~skillmix.testing.fake_openai.run_batch`) instead.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from skillmix.testing.fake_openai.faults import parse_fault
from skillmix.testing.fake_openai.responders import SkillMixResponder
from skillmix.testing.fake_openai.server import FakeOpenAIServer

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["run-batch"]:  # the offline runner, vllm run-batch's arguments (run_batch.py)
        from skillmix.testing.fake_openai.run_batch import main as run_batch

        return run_batch(argv[1:])
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m skillmix.testing.fake_openai",
        description="A fake OpenAI-compatible server: prints 'BASE_URL <url>' first, a JSON summary on exit.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds waited before each answer")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC", help="e.g. 429:every=3")
    parser.add_argument("--model", default="fake-teacher")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the SkillMixResponder")
    parser.add_argument("--accept-rate", type=float, default=0.7)
    parser.add_argument("--log", default=None, metavar="FILE", help="append one JSON line per request")
    args = parser.parse_args(argv)
    try:
        faults = [parse_fault(spec) for spec in args.fault]
        responder = SkillMixResponder(seed=args.seed, accept_rate=args.accept_rate)
    except ValueError as exc:
        parser.error(str(exc))
    server = FakeOpenAIServer(
        responder,
        latency=args.latency,
        faults=faults,
        model=args.model,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        log_path=args.log,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"BASE_URL {server.base_url}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        server.stop()
        print(json.dumps(server.summary(), sort_keys=True), flush=True)
    return 0
