"""Batch mode end to end against the fake server's batch API: a batched `skillmix dataset` gives the rows a
direct one gives; a SIGKILL while its batches are in progress loses nothing and pays for nothing twice;
failed and expired lines are sent again; a capped batched run bills at most the cap; `skillmix eval
--judge-batch` works the same way."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import cli_env, communicate, dataset_cmd, run_cli, run_here

from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder
from skillmix.testing.fake_openai.batches import BatchBehaviour

FAST = {"SKILLMIX_BATCH_POLL_SECONDS": "0.05"}


def rows(folder: Path) -> dict[str, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    volatile = ("usage", "round1_usage", "round2_usage", "grader_usage")
    out = {}
    for info in manifest["configs"].values():
        for row in pq.read_table(folder / info["path"]).to_pylist():
            out[row["id"]] = {k: v for k, v in row.items() if k not in volatile and not k.endswith("_usage")}
    return out


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    """Batches are looked at every 0.05 s (the run's default is 5 s); the server's turnaround is its own."""
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


def batched_env() -> dict[str, str]:
    return {**cli_env(), **FAST}


def test_a_batched_dataset_has_the_rows_of_a_direct_one(tmp_path):
    with FakeOpenAIServer(responder=SkillMixResponder(seed=4, accept_rate=0.6),
                          batches=BatchBehaviour(turnaround=0.2)) as server:  # fmt: skip
        direct = run_here(dataset_cmd(server, tmp_path / "direct", "--k", "2,3", "--n", "4"))
        assert direct.returncode == 0, direct.stderr[-3000:]
        chat_before = server.count(path="/v1/chat/completions")
        flags = ["--k", "2,3", "--n", "4", "--teacher-batch", "--judge-batch"]
        batched = run_here(dataset_cmd(server, tmp_path / "batched", *flags))
        assert batched.returncode == 0, batched.stderr[-3000:]
        assert server.count(path="/v1/chat/completions") == chat_before  # nothing was sent one by one
        created = server.batch_api.created()
        assert len(created) == 3  # round 1, round 2, grading
        status = run_here(["batches", "status", str(tmp_path / "batched")])
        assert status.returncode == 0 and all(f"{b}  " in status.stdout for b in created), status.stderr
        assert status.stdout.count("completed") == 3
        cancel = run_here(["batches", "cancel", str(tmp_path / "batched")])
        assert cancel.returncode == 0 and "no batch is running" in cancel.stdout
    assert rows(tmp_path / "batched") == rows(tmp_path / "direct")
    assert "batches: 3 created for" in batched.stderr and "saved against direct prices" in batched.stderr


def submitted_lines(server) -> list[str]:
    """Every custom id of every batch created, in order (a line sent twice would be here twice)."""
    api = server.batch_api
    out = []
    for batch_id in api.created():
        data = api.files[api.batches[batch_id]["input_file_id"]]["bytes"].decode()
        out += [json.loads(line)["custom_id"] for line in data.splitlines() if line.strip()]
    return out


@pytest.mark.slow  # about 40 s
def test_a_run_killed_while_its_batches_run_collects_them_and_sends_nothing_twice(tmp_path):
    import sqlite3

    out = tmp_path / "data"
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"fake-teacher: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n")
    with FakeOpenAIServer(responder=SkillMixResponder(seed=6, accept_rate=0.6),
                          batches=BatchBehaviour(turnaround=2.0)) as server:  # fmt: skip
        flags = [
            "--k",
            "2",
            "--n",
            "4",
            "--teacher-batch",
            "--judge-batch",
            "--prices",
            str(prices),
            *MAX_TOKENS,
        ]
        plan = run_cli([*dataset_cmd(server, tmp_path / "plan", *flags), "--dry-run"])
        worst = float(
            next(line for line in plan.stderr.splitlines() if "worst case $" in line).split("$")[1].split()[0]
        )
        # a cap just above the worst case of every line: the killed run's reservations, counted twice, would
        # leave no room for the lines of rounds 2 and grading
        cmd = dataset_cmd(server, out, *flags, "--max-usd", f"{worst * 1.01:.6f}")
        first = subprocess.Popen(cmd, env=batched_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 120
        while not server.batch_api.created():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # round 1's batch is in progress
        first.wait()
        # as if the kill had come between the create call and the local record of the batch id
        db = sqlite3.connect(out / ".skillmix" / "cache.sqlite")
        db.execute("DELETE FROM batches")
        db.commit()
        db.close()
        again = run_cli(cmd)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "adopted batch" in again.stderr
        lines = submitted_lines(server)
        assert len(lines) == len(set(lines))  # no request was sent in two batches
        assert len(server.batch_api.created()) == 3 and server.count(path="/v1/chat/completions") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert sum(c["sampled"] for c in manifest["counts"]["per_k"].values()) == 4  # every row accounted
    assert all(r["status"] != "budget" for r in rows(out).values())  # no line was refused by the cap
    held = sqlite3.connect(out / ".skillmix" / "cache.sqlite").execute("SELECT COUNT(*) FROM reservations")
    assert held.fetchone()[0] == 0  # every reservation, the killed run's too, settled once


@pytest.mark.slow  # about 70 s
def test_failed_and_expired_lines_are_sent_again(tmp_path):
    seen: set[str] = set()

    def once(line):  # every line fails the first time it is run
        if line["custom_id"] in seen:
            return None
        seen.add(line["custom_id"])
        return 500

    with FakeOpenAIServer(responder=SkillMixResponder(seed=2), batches=BatchBehaviour(fail=once)) as server:
        result = run_cli(
            dataset_cmd(server, tmp_path / "a", "--k", "2", "--n", "3", "--teacher-batch", "--judge-batch")
        )
        assert result.returncode == 0, result.stderr[-3000:]
        lines = submitted_lines(server)
        assert all(lines.count(line) == 2 for line in set(lines))  # each sent once more, and only once
    assert all(r["status"] != "api_error" for r in rows(tmp_path / "a").values())
    with FakeOpenAIServer(
        responder=SkillMixResponder(seed=2), batches=BatchBehaviour(fail=lambda line: 500)
    ) as server:
        result = run_cli(dataset_cmd(server, tmp_path / "b", "--k", "2", "--n", "2", "--teacher-batch",
                                     "--max-retries", "1"))  # fmt: skip
        lines = submitted_lines(server)
        assert all(lines.count(line) == 2 for line in set(lines))  # the retry limit: 1 more batch
    failed = rows(tmp_path / "b")
    assert failed and all(
        r["status"] == "api_error" and "after 2 batches" in r["failure_reason"] for r in failed.values()
    )
    with FakeOpenAIServer(responder=SkillMixResponder(seed=2), batches=BatchBehaviour(expire=1)) as server:
        result = run_cli(
            dataset_cmd(server, tmp_path / "c", "--k", "2", "--n", "4", "--teacher-batch", "--judge-batch")
        )
        assert result.returncode == 0, result.stderr[-3000:]
        first = server.batch_api.batches[server.batch_api.created()[0]]
        assert first["status"] == "expired" and first["request_counts"]["completed"] == 2
        lines = submitted_lines(server)
        assert len(lines) == len(set(lines)) + 2  # the 2 lines it did not run were sent again
    assert rows(tmp_path / "c") == rows_direct(tmp_path, seed=2)


def rows_direct(tmp_path: Path, seed: int) -> dict[str, dict]:
    out = tmp_path / "direct"
    if not out.exists():
        with FakeOpenAIServer(responder=SkillMixResponder(seed=seed)) as server:
            result = run_cli(dataset_cmd(server, out, "--k", "2", "--n", "4"))
            assert result.returncode == 0, result.stderr[-3000:]
    return rows(out)


PRICE = (0.0, 1000.0)  # USD per 1M tokens in / out (direct); batch lines cost half
MAX_TOKENS = ["--teacher-max-tokens", "120", "--judge-max-tokens", "120"]


def test_a_capped_batched_run_finishes_every_row_it_starts_and_a_higher_cap_finishes_the_rest(tmp_path):
    """The cap per row, as in direct mode: a row's worst case (all its stages, at the batch price) is
    reserved when its first line is sent; billed <= cap; a re-run with a higher cap sends what was refused."""
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"fake-teacher: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n")
    cap = 0.75  # a row: about $0.30 at worst at the batch price
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=2, accept_rate=0.6)) as server:
        flags = ["--k", "2", "--n", "8", "--prices", str(prices), "--teacher-batch", "--judge-batch",
                 *MAX_TOKENS]  # fmt: skip
        result = run_here(dataset_cmd(server, out, *flags, "--max-usd", str(cap)))
        first = billed_usd(server)
        assert result.returncode == 0, result.stderr[-3000:]
        found = list(rows(out).values())
        never = [r for r in found if r["status"] == "budget" and r["failure_reason"].startswith("round1:")]
        assert never and len(never) < len(found)  # some rows were never started
        assert all(r["status"] != "budget" for r in found if r not in never)  # every started row finished
        assert 0 < first <= cap
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["cost_usd"] == pytest.approx(first)
        again = run_here(dataset_cmd(server, out, *flags, "--max-usd", "100"))
        assert again.returncode == 0, again.stderr[-3000:]
        assert server.count(path="/v1/chat/completions") == 0
        assert all(r["status"] != "budget" for r in rows(out).values())  # what was refused is done now
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["cost_usd"] == pytest.approx(billed_usd(server))  # nothing paid twice
    cache = sqlite3.connect(out / ".skillmix" / "cache.sqlite")
    assert cache.execute("SELECT COUNT(*) FROM reservations").fetchone()[0] == 0  # every row's given back


def billed_usd(server) -> float:
    """What the fake billed for batch lines, at the batch price."""
    totals = server.batch_api.usage_totals().get("fake-teacher", {"prompt_tokens": 0, "completion_tokens": 0})
    return 0.5 * (totals["prompt_tokens"] * PRICE[0] + totals["completion_tokens"] * PRICE[1]) / 1e6


def evaluate(server, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """`skillmix eval` of the fake server's model, judged by it (k = 2, held-out, 4 x 2 generations), in
    this process (its fast polls from ``fast_polls``)."""
    roles = ["--student-model", "fake-teacher", "--student-base-url", server.base_url, "--judge-model",
             "fake-teacher", "--judge-base-url", server.base_url]  # fmt: skip
    sizes = ["--k", "2", "--setting", "held-out", "--n", "4", "--generations", "2"]
    return run_here(["eval", *roles, *sizes, "--out", str(out), *extra])


def test_an_evaluation_with_a_batched_judge_scores_as_a_direct_one(tmp_path):
    with FakeOpenAIServer(responder=SkillMixResponder(seed=9, accept_rate=0.5)) as server:
        direct = evaluate(server, tmp_path / "direct")
        assert direct.returncode == 0, direct.stderr[-3000:]
        judged = server.count(path="/v1/chat/completions")
        batched = evaluate(server, tmp_path / "batched", "--judge-batch")
        assert batched.returncode == 0, batched.stderr[-3000:]
        assert (
            server.batch_api.created() and server.count(path="/v1/chat/completions") > judged
        )  # the student
    results = [
        json.loads((tmp_path / name / "results.json").read_text())["results"]
        for name in ("direct", "batched")
    ]
    assert results[0] == results[1]


def test_the_plan_shows_the_batch_and_the_direct_cost(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"fake-teacher: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n")
    teacher = ["--teacher-model", "fake-teacher", "--teacher-base-url", "http://127.0.0.1:9/v1"]
    cmd = ["dataset", *teacher, "--k", "2", "--n", "4", "--prices", str(prices), "--dry-run", "--out",
           str(tmp_path / "out")]  # fmt: skip
    direct = run_here(cmd)
    batched = run_here([*cmd, "--teacher-batch", "--judge-batch"])
    assert direct.returncode == batched.returncode == 0, batched.stderr

    def worst(text: str) -> float:
        return float(
            next(line for line in text.splitlines() if "worst case $" in line).split("$")[1].split()[0]
        )

    assert worst(batched.stderr) == pytest.approx(worst(direct.stderr) / 2)  # the 50% rule
    assert f"sent one by one, worst case ${worst(direct.stderr):,.4f}" in batched.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("batches", [None, BatchBehaviour(absent=501)], ids=["404", "501"])
def test_a_server_without_a_batch_api_is_refused_before_the_run(tmp_path, batches):
    with FakeOpenAIServer(batches=batches) as server:
        result = run_here(dataset_cmd(server, tmp_path / "out", "--k", "2", "--n", "2", "--judge-batch"))
        assert server.count(path="/v1/chat/completions") == 0
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "serves no batch API" in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow  # about 20 s
def test_ctrl_c_leaves_the_batches_running_and_says_so(tmp_path):
    out = tmp_path / "data"
    with FakeOpenAIServer(
        responder=SkillMixResponder(seed=3), batches=BatchBehaviour(turnaround=600)
    ) as server:
        cmd = dataset_cmd(server, out, "--k", "2", "--n", "3", "--teacher-batch", "--judge-batch")
        run = subprocess.Popen(cmd, env=batched_env(), start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not server.batch_api.created():
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1)
        os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
        _, stderr = communicate(run, cmd, timeout=120)  # stacks of every process if it hangs
        assert run.returncode == 130, stderr[-2000:]
        assert "the batches in flight keep running" in stderr and f"skillmix batches cancel {out}" in stderr
        (batch_id,) = server.batch_api.created()
        assert server.batch_api.batches[batch_id]["status"] in ("validating", "in_progress")  # not cancelled
        cancel = run_cli([sys.executable, "-m", "skillmix.cli", "batches", "cancel", str(out)])
        assert cancel.returncode == 0 and f"{batch_id}: cancelling" in cancel.stdout  # the API's answer
        assert server.batch_api.batches[batch_id]["status"] == "cancelling"
        status = run_cli([sys.executable, "-m", "skillmix.cli", "batches", "status", str(out)])
        assert status.returncode == 0 and "cancelled" in status.stdout, status.stdout


@pytest.mark.slow  # about 25 s
def test_an_evaluation_with_a_batched_api_student_scores_as_a_direct_one(tmp_path):
    with FakeOpenAIServer(responder=SkillMixResponder(seed=9, accept_rate=0.5)) as server:
        direct = evaluate(server, tmp_path / "direct")
        assert direct.returncode == 0, direct.stderr[-3000:]
        chat = server.count(path="/v1/chat/completions")
        both = evaluate(server, tmp_path / "both", "--judge-batch", "--student-batch")
        assert both.returncode == 0, both.stderr[-3000:]
        assert server.count(path="/v1/chat/completions") == chat  # every request went in a batch
    results = [json.loads((tmp_path / n / "results.json").read_text())["results"] for n in ("direct", "both")]
    assert results[0] == results[1]


def test_only_a_remote_chat_model_can_be_batched(tmp_path):
    from skillmix.config import ConfigError
    from skillmix.llm.roles import ResolvedModel
    from skillmix.pipelines.driver import check_batchable

    local = ResolvedModel("student", "tiny", "http://127.0.0.1:1/v1", priced=False, where="transformers")
    with pytest.raises(ConfigError, match=r"--student-batch: the student .* runs here and has no batch API"):
        check_batchable(local, reach=False)
    base = ResolvedModel("teacher", "base", "http://127.0.0.1:1/v1", mode="completion")
    with pytest.raises(ConfigError, match="--teacher-batch: batch mode sends chat requests"):
        check_batchable(base, reach=False)
    embedded = run_here(["dataset", "--judge-batch", "--k", "2", "--n", "2", "--out", str(tmp_path / "out")])
    assert embedded.returncode == 2 and "the embedded model runs here and has no batch API" in embedded.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # about 15 s
def test_an_account_refusal_stops_the_run_with_the_providers_message_and_the_same_command_goes_on(tmp_path):
    from skillmix.testing.fake_openai.batches import enqueued_token_limit

    refuse = BatchBehaviour(refuse=lambda n, lines: enqueued_token_limit() if n == 0 else None)
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5), batches=refuse) as server:
        cmd = dataset_cmd(
            server, tmp_path / "out", "--k", "2", "--n", "2", "--teacher-batch", "--judge-batch"
        )
        first = run_here(cmd)
        assert first.returncode == 1, first.stderr[-3000:]
        last = first.stderr.strip().splitlines()[-1]
        assert (
            last.startswith("skillmix: error: the provider refused batch") and "Traceback" not in first.stderr
        )
        assert "Enqueued token limit reached" in last and "run the same command again" in last
        again = run_here(cmd)
        assert again.returncode == 0, again.stderr[-3000:]
        assert len(server.batch_api.created()) == 4  # the refused batch, then round 1, round 2 and grading
