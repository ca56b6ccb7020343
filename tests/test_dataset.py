"""`skillmix dataset` end to end against a loopback OpenAI-compatible server with injected faults."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import cli_env, dataset_cmd, run_cli, run_here
from datasets import load_dataset

from skillmix.testing.fake_openai import FakeOpenAIServer, Fault, SkillMixResponder, request_key

CHAT = "/v1/chat/completions"


def load_rows(out: Path, config: str):
    return load_dataset(str(out), config, split="train").to_list()


def test_every_row_is_accounted_for_under_faults(tmp_path):
    faults = [
        Fault(status=429, retry_after=0.05, every=3),  # transient: recovered by retries
        Fault(status=500, every=5),
        Fault(hang=3.0, every=11),  # client timeout, then a retry
        Fault(
            content="| Criteria | Points |\n|---|---|\n| garbage",
            match="The text to grade",
            every=4,
            attempts=None,
        ),
        Fault(status=400, content="permanently bad", match="Compose a short", every=6, attempts=None),
    ]
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=1, accept_rate=0.6), faults=faults) as server:
        result = run_cli(dataset_cmd(server, out, "--k", "1,2", "--n", "12", "--timeout", "1"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.count(status=429) > 0 and server.count(status=500) > 0
    manifest = json.loads((out / "manifest.json").read_text())
    for k in (1, 2):
        c = manifest["counts"]["per_k"][f"k{k}"]
        assert c["sampled"] == 12
        assert c["kept"] + c["rejected"] + c["failed"] == 12
    kept = load_rows(out, "k1") + load_rows(out, "k2")
    rejected = load_rows(out, "rejected") if "rejected" in manifest["configs"] else []
    failed = load_rows(out, "failed")
    assert len(kept) + len(rejected) + len(failed) == 24
    assert len({r["id"] for r in kept + rejected + failed}) == 24
    for row in kept:
        assert row["outcome"] == "kept" and row["points"] == [1] * (row["k"] + 3) and row["answer"]
        assert [m["role"] for m in row["conversation"]] == ["user", "assistant", "user", "assistant"]
        assert len(row["grader_outputs"]) == 3 and row["teacher"] == "fake-teacher"
    for row in rejected:
        assert row["failed_points"] and 0 in row["points"]
    for row in failed:  # the permanent 400 on round 1: reason carried, never an unexplained None
        assert row["outcome"] == "failed" and row["failure_reason"] and row["status"] != "ok"
    assert any("permanently bad" in r["failure_reason"] for r in failed)
    # malformed grader tables are unparseable runs (with the reason), outvoted or reported, never zeros
    statuses = [s for r in kept + rejected for s in r["grader_status"]]
    assert "unparseable" in statuses
    assert "Skill-Mix dataset written to" in result.stdout and "failures by reason" in result.stdout
    parquet = out / "k1" / "train-00000-of-00001.parquet"
    hint = f'datasets.load_dataset("parquet", data_files="{parquet}", split="train")'
    assert hint in result.stdout
    assert f"skillmix publish --data {out}" in result.stdout and f"{out}/README.md" in result.stdout
    if rejected:
        assert "rejected rows missed " in result.stdout
    assert_only_our_lines(result)


FOREIGN = re.compile(r"examples/s|it/s\]|Generating |INFO|WARNING|HTTP Request|distilabel|\d+%\|")


def assert_only_our_lines(result) -> None:
    """No progress bar or log line of a library (datasets, distilabel, httpx) between ours."""
    foreign = [line for line in (result.stdout + result.stderr).splitlines() if FOREIGN.search(line)]
    assert foreign == [], foreign[:5]


def test_killed_run_resumes_without_repeating_requests(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer(latency=0.05) as server:
        cmd = dataset_cmd(server, out, "--k", "2", "--n", "24", "--concurrency", "4")
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while server.count(status=200, path=CHAT) < 40 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)
        seen_before = len(server.requests)
        with sqlite3.connect(out / ".skillmix" / "cache.sqlite") as db:
            done = {request_key(json.loads(body)) for (body,) in db.execute("SELECT request FROM responses")}
        assert len(done) >= 20, "the killed run should have completed some requests"
        assert not (out / "manifest.json").exists()  # nothing half-written

        result = run_cli(cmd)
        assert result.returncode == 0, result.stderr[-3000:]
        again = [r for r in server.requests[seen_before:] if r.key in done]
        assert again == [], f"{len(again)} completed requests were sent again"
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]["per_k"]["k2"]
    assert c["sampled"] == 24 and c["kept"] + c["rejected"] + c["failed"] == 24


def assert_clean_error(result, message):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skillmix: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "K must be >= 1"),
        (["--k", "60"], "K=60 exceeds the 53 skills eligible"),
        (["--k", "two"], "K must be an integer or a comma-separated list"),
        (["--preset", "nonexistent"], "unknown preset 'nonexistent'"),
        (["--catalog", "/nonexistent/skills.csv"], "no such catalog file"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, message):
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        result = run_here(dataset_cmd(server, out, *args))
        assert server.count(path=CHAT) == 0
    assert_clean_error(result, message)
    assert not out.exists()


def test_unreachable_base_url_and_missing_key(tmp_path):
    out = tmp_path / "out"
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
    cmd = ["dataset", "--out", str(out), "--teacher-model", "m", "--teacher-base-url", dead,
           "--judge-base-url", dead]  # fmt: skip
    assert_clean_error(run_here(cmd), f"the teacher base URL {dead} does not answer")
    cmd = ["dataset", "--out", str(out), "--teacher-model", "gpt-4o"]
    assert_clean_error(run_here(cmd), "OPENAI_API_KEY is not set")
    assert not out.exists()


def test_folder_of_another_run_is_left_intact(tmp_path):
    out = tmp_path / "out"
    (out / ".skillmix").mkdir(parents=True)
    (out / ".skillmix" / "run.json").write_text(json.dumps({"fingerprint": "another"}))
    (out / "manifest.json").write_text("{}")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with FakeOpenAIServer() as server:
        assert_clean_error(run_here(dataset_cmd(server, out)), "holds another run's data")
        assert_clean_error(run_here(dataset_cmd(server, foreign)), "holds no skillmix run")
        assert server.count(path=CHAT) == 0
    assert (out / "manifest.json").read_text() == "{}"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_a_run_in_this_process_gives_back_the_callers_logging(tmp_path):
    """distilabel clears the root logger's handlers, raises its level and silences library loggers at each
    run: a notebook (or a test) calling skillmix keeps its own logging afterwards."""
    import logging

    from datasets.utils import logging as datasets_logging

    root, handler = logging.getLogger(), logging.NullHandler()
    before = (root.level, logging.getLogger("datasets").level, logging.getLogger("httpx").level)
    root.addHandler(handler)
    bars = datasets_logging.is_progress_bar_enabled()
    try:
        with FakeOpenAIServer(responder=SkillMixResponder(seed=1)) as server:
            result = run_here(dataset_cmd(server, tmp_path / "out", "--k", "2", "--n", "1"))
        assert result.returncode == 0, result.stderr[-3000:]
        assert handler in root.handlers and datasets_logging.is_progress_bar_enabled() == bars
        assert (root.level, logging.getLogger("datasets").level, logging.getLogger("httpx").level) == before
    finally:
        root.removeHandler(handler)
