"""Money: a spending cap that is never passed, exactly N kept rows, limits for the whole run, a true plan.

Spend is counted by the server from what it answered (its reported usage at the test's prices), never
from the run's own summary.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_runs import cli_env, dataset_cmd, run_cli, run_here
from datasets import load_dataset

from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer, SkillMixResponder

PRICE = (0.0, 1000.0)  # USD per 1M tokens in / out: a row's worst case is close to what it really costs
MAX_TOKENS = ["--teacher-max-tokens", "120", "--judge-max-tokens", "120"]


def prices_file(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(f"fake-teacher: {{input: {PRICE[0]}, output: {PRICE[1]}}}\n")
    return path


def billed(server) -> float:
    """Dollars the server's answers cost, from the usage it reported."""
    totals = server.usage_totals().get("fake-teacher", {"prompt_tokens": 0, "completion_tokens": 0})
    return (totals["prompt_tokens"] * PRICE[0] + totals["completion_tokens"] * PRICE[1]) / 1e6


def manifest_of(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def load(out: Path, name: str) -> list[dict]:
    """A config of the folder, through datasets (with a cache of its own: datasets keys the cache of a
    local folder by its name, and every test folder here is called ``out``)."""
    return load_dataset(str(out), name, split="train", cache_dir=str(out.parent / "hf-cache")).to_list()


def all_rows(out: Path) -> list[dict]:
    return [row for name in manifest_of(out)["configs"] for row in load(out, name)]


@pytest.mark.parametrize(
    ("cap", "concurrency"), [(1.5, 16), pytest.param(3.0, 64, marks=pytest.mark.slow)]
)  # a row: $0.60 at worst
def test_the_cap_is_never_passed_and_rows_are_whole(tmp_path, cap, concurrency):
    out = tmp_path / "out"
    with FakeOpenAIServer(latency=0.05, responder=SkillMixResponder(seed=2, accept_rate=0.6)) as server:
        cmd = dataset_cmd(server, out, "--k", "2", "--n", "16", "--max-usd", str(cap), "--concurrency",
                          str(concurrency), "--prices", str(prices_file(tmp_path)), *MAX_TOKENS)  # fmt: skip
        result = run_here(cmd)
        spent = billed(server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 < spent <= cap, f"billed ${spent:.4f} under a cap of ${cap}"
    rows = all_rows(out)
    assert len(rows) == 16
    started = [r for r in rows if r["status"] != "budget"]
    never = [r for r in rows if r["status"] == "budget"]
    assert started and never, "the cap should let some rows start and stop others"
    assert all(r["outcome"] in ("kept", "rejected") for r in started)  # every started row was graded
    assert all(r["failure_reason"].startswith("budget: not started") for r in never)
    assert all(r["usage"]["teacher"]["usd"] == 0 and r["usage"]["judge"]["usd"] == 0 for r in never)
    assert manifest_of(out)["cost_usd"] == pytest.approx(spent)
    assert f"spending limit ${cap:.2f}" in result.stdout


def test_a_killed_run_and_its_rerun_stay_within_the_cap_together(tmp_path):
    out, cap = tmp_path / "out", 3.0
    with FakeOpenAIServer(latency=0.1, responder=SkillMixResponder(seed=4, accept_rate=0.6)) as server:
        cmd = dataset_cmd(server, out, "--k", "2", "--n", "16", "--max-usd", str(cap), "--prices",
                          str(prices_file(tmp_path)), "--concurrency", "8", *MAX_TOKENS)  # fmt: skip
        proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while server.count(status=200, path=CHAT_PATH) < 12 and time.monotonic() < deadline:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        time.sleep(0.3)
        assert 0 < billed(server) <= cap
        result = run_cli(cmd)
        spent = billed(server)
    assert result.returncode == 0, result.stderr[-3000:]
    assert spent <= cap, f"the two runs billed ${spent:.4f} together under a cap of ${cap}"
    assert len(all_rows(out)) == 16


@pytest.mark.parametrize(
    ("target", "accept"),
    [(1, 0.8), (7, 0.2), (25, 0.8), pytest.param(7, 0.8, marks=pytest.mark.slow),
     pytest.param(1, 0.2, marks=pytest.mark.slow)],
)  # fmt: skip
def test_target_accepted_keeps_exactly_n_and_the_rest_in_surplus(tmp_path, target, accept):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=target, accept_rate=accept)) as server:
        cmd = dataset_cmd(server, out, "--k", "2,3", "--target-accepted", str(target))
        result = run_here(cmd)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = manifest_of(out)["counts"]["per_k"]
    for k in (2, 3):
        kept = load(out, f"k{k}")
        assert len(kept) == target and counts[f"k{k}"]["kept"] == target
        assert all(r["outcome"] == "kept" and r["k"] == k for r in kept)
    surplus = load(out, "surplus") if "surplus" in manifest_of(out)["configs"] else []
    assert len(surplus) == sum(c["surplus"] for c in counts.values())
    assert all(r["outcome"] == "kept" for r in surplus)
    for c in counts.values():
        assert c["kept"] + c["surplus"] + c["rejected"] + c["failed"] == c["sampled"]


@pytest.mark.slow  # five builds of 25 kept rows: a measurement more than a check
def test_target_overshoot_costs_little_at_half_acceptance(tmp_path):
    prices = prices_file(tmp_path)
    surplus_usd, kept_usd = 0.0, 0.0
    for seed in range(5):
        out = tmp_path / f"out{seed}"
        with FakeOpenAIServer(responder=SkillMixResponder(seed=100 + seed, accept_rate=0.5)) as server:
            cmd = dataset_cmd(server, out, "--k", "2", "--target-accepted", "25", "--seed", str(seed),
                              "--prices", str(prices), *MAX_TOKENS)  # fmt: skip
            result = run_cli(cmd)
        assert result.returncode == 0, result.stderr[-3000:]
        manifest = manifest_of(out)
        kept = load(out, "k2")
        assert len(kept) == 25
        kept_usd += sum(r["usage"]["teacher"]["usd"] + r["usage"]["judge"]["usd"] for r in kept)
        surplus_usd += manifest["counts"]["surplus_usd"]
        assert f"overshoot ${manifest['counts']['surplus_usd']:.4f}" in result.stdout
    assert kept_usd > 0 and surplus_usd < 0.25 * kept_usd, (surplus_usd, kept_usd)


@pytest.mark.slow  # more than a minute by nature; the shared window itself is tested in test_llm.py
def test_requests_per_minute_bound_the_whole_run(tmp_path):
    out, rpm = tmp_path / "out", 12
    with FakeOpenAIServer(responder=SkillMixResponder(seed=6, accept_rate=0.5)) as server:
        started = time.time()
        result = run_cli(dataset_cmd(server, out, "--k", "2", "--n", "3", "--requests-per-minute", str(rpm)))
        arrivals = sorted(r.at for r in server.requests if r.path == CHAT_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(arrivals) == 15 and time.time() - started > 60  # more requests than one minute allows
    for i, first in enumerate(arrivals):
        in_window = [t for t in arrivals[i:] if t - first < 60.0]
        assert len(in_window) <= rpm, f"{len(in_window)} requests within 60 s of t={first - arrivals[0]:.1f}"


def test_dry_run_prints_the_plan_and_sends_nothing(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        cmd = dataset_cmd(server, out, "--k", "3", "--n", "30", "--max-usd", "2", "--prices",
                          str(prices_file(tmp_path)), "--dry-run")  # fmt: skip
        result = run_here(cmd)
        assert server.count() == 0
    assert result.returncode == 0, result.stderr
    assert "Plan: 30 combinations (k=3), 150 requests" in result.stderr
    assert "worst case $" in result.stderr and "expected   $" in result.stderr
    assert "--max-usd $2.00: never passed; a row starts only if its worst case fits" in result.stderr
    # a row's worst case: 5 requests of 300 tokens out at $1000 per million (prompts are free here)
    assert "($1.5000 a row: room for 1 at once)" in result.stderr
    assert not out.exists()


def test_the_plan_counts_combinations_and_generations_apart(tmp_path, capsys, monkeypatch):
    from skillmix.cli import main

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    url = "http://127.0.0.1:9/v1"  # a dry run reaches no server
    flags = ["--teacher-model", "gpt-4o", "--teacher-base-url", url, "--judge-base-url", url, "--dry-run"]
    out = tmp_path / "out"
    assert main(["dataset", "--out", str(out), "--k", "2,3", "--n", "6", "--generations", "3", *flags]) == 0
    # 6 combinations per k, 3 texts each; 5 requests a text (2 rounds, 3 grader runs)
    assert "Plan: 12 combinations x 3 generations = 36 texts (k=2,3), 180 requests" in capsys.readouterr().err
    assert main(["dataset", "--out", str(out), "--k", "2,3", "--n", "6", *flags]) == 0
    assert "Plan: 12 combinations (k=2,3), 60 requests" in capsys.readouterr().err
    assert not out.exists()


def test_an_unpriced_model_under_a_cap_is_refused_by_name(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        result = run_here(dataset_cmd(server, out, "--k", "2", "--n", "2", "--max-usd", "1"))
        assert server.count(path=CHAT_PATH) == 0
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the teacher model 'fake-teacher', which is not known" in lines[0]
    assert "--prices" in lines[0] and not out.exists()
