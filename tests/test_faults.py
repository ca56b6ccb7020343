"""No interruption or broken file may destroy a finished dataset or report a false one.

Each case runs the real command against the tests' fake OpenAI server and asserts the exit code, the
message, that the previous output is byte-for-byte unchanged where it must be, and that a re-run then
finishes with every row accounted for.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_runs import cli_env, dataset_cmd, run_here
from cli_runs import run_cli as run

from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer, SkillMixResponder


def cmd(server, out: Path, n: int, *extra: str) -> list[str]:
    return dataset_cmd(server, out, "--k", "2", "--n", str(n), *extra)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file of the dataset itself (not the run state in .skillmix/), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and ".skillmix" not in p.relative_to(out).parts
    }


def counts(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["counts"]["per_k"]["k2"]


def accounted(out: Path, n: int) -> bool:
    c = counts(out)
    return c["sampled"] == n and c["kept"] + c["surplus"] + c["rejected"] + c["failed"] == n


@pytest.fixture
def server():
    with FakeOpenAIServer(latency=0.1, responder=SkillMixResponder(seed=8, accept_rate=0.6)) as fake:
        yield fake


@pytest.fixture
def finished(tmp_path, build_dataset):
    """A finished folder of 4 rows, to be protected by the cases below: a copy of ``cmd(server, out, 4)``
    built once for the session, answered by another server (whose replies this test's server would repeat,
    at a new URL)."""
    out = tmp_path / "out"
    shutil.copytree(build_dataset("2", 4, 8, 0.6), out)
    return out


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skillmix: error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_a_corrupt_cache_is_named_and_nothing_is_touched(finished, server):
    before = snapshot(finished)
    cache = finished / ".skillmix" / "cache.sqlite"
    for extra in ("-wal", "-shm"):
        Path(f"{cache}{extra}").unlink(missing_ok=True)
    cache.write_bytes(b"\x13garbage from a half-synced copy" * 100)
    sent = server.count(path=CHAT_PATH)
    result = run_here(cmd(server, finished, 8))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(cache) in line and "move it aside" in line and "nothing is deleted" in line
    assert server.count(path=CHAT_PATH) == sent  # before any request
    assert snapshot(finished) == before and cache.exists()  # nothing deleted, not even the broken cache
    cache.rename(cache.with_suffix(".broken"))
    result = run_here(cmd(server, finished, 8))
    assert result.returncode == 0, result.stderr[-3000:]
    assert accounted(finished, 8)


@pytest.mark.parametrize(
    ("name", "damage", "says"),
    [
        ("manifest.json", lambda p: p.write_text("{not json"), "does not parse"),
        (".skillmix/run.json", lambda p: p.write_text("[1, 2"), "does not parse"),
        ("k2/train-00000-of-00001.parquet", lambda p: p.write_bytes(p.read_bytes()[:100]), "does not load"),
    ],
)
def test_a_broken_state_file_is_named_before_any_request(finished, server, name, damage, says):
    target = finished / name
    if not target.exists():
        pytest.skip(f"the finished folder has no {name} (no row kept)")
    damage(target)
    before, sent = snapshot(finished), server.count(path=CHAT_PATH)
    result = run_here(cmd(server, finished, 8))
    assert result.returncode == 2
    line = one_error_line(result)
    assert str(target) in line and says in line
    assert server.count(path=CHAT_PATH) == sent and snapshot(finished) == before


def interrupt(server, out: Path, n: int, signum: int, after_requests: int) -> subprocess.CompletedProcess:
    args = cmd(server, out, n, "--concurrency", "4")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(args, text=True, env=cli_env(), start_new_session=True, **pipes)
    deadline = time.monotonic() + 120
    while server.count(status=200, path=CHAT_PATH) < after_requests and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        time.sleep(0.02)
    sent_at = time.monotonic()
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else os.kill(proc.pid, signum)  # Ctrl-C: group
    stdout, stderr = proc.communicate(timeout=60)
    assert time.monotonic() - sent_at < 20, "an interrupted run must stop within seconds"
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_leaves_the_previous_output_and_resumes(finished, server, signum, code):
    before = snapshot(finished)
    already = server.count(status=200, path=CHAT_PATH)
    result = interrupt(server, finished, 30, signum, already + 15)
    assert result.returncode == code, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("skillmix: interrupted: ") and " of 30 rows done, nothing paid is lost; " in last
    assert "run the same command again to resume" in last and "Traceback" not in result.stderr
    assert snapshot(finished) == before  # not a folder of failures: the previous output, untouched
    assert result.stdout == ""
    answered = {r.key for r in server.requests if r.status == 200 and r.path == CHAT_PATH}
    seen = len(server.requests)
    rerun = run(cmd(server, finished, 30))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert accounted(finished, 30)
    assert not [r for r in server.requests[seen:] if r.key in answered]  # nothing paid is asked again


def test_a_fresh_folder_interrupted_claims_no_dataset(tmp_path, server):
    out = tmp_path / "fresh"
    result = interrupt(server, out, 30, signal.SIGINT, 10)
    assert result.returncode == 130, result.stderr[-3000:]
    assert not (out / "manifest.json").exists() and not (out / "README.md").exists()


def test_a_second_run_into_the_same_folder_is_refused_at_once(tmp_path, server):
    out = tmp_path / "out"
    first = subprocess.Popen(cmd(server, out, 12), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=cli_env())  # fmt: skip
    deadline = time.monotonic() + 120
    while server.count(path=CHAT_PATH) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.poll() is None
    started = time.monotonic()
    second = run(cmd(server, out, 12), timeout=60)
    assert time.monotonic() - started < 15
    assert second.returncode == 2
    line = one_error_line(second)
    assert "is in use by another skillmix run" in line and f"process {first.pid}" in line
    assert first.wait(timeout=240) == 0, first.stderr.read()[-3000:]
    assert accounted(out, 12)
    assert server.count(path=CHAT_PATH) == 12 * 5  # the first run's requests alone: the second sent none


def test_a_failed_final_write_keeps_the_previous_output(finished, server, monkeypatch, capsys):
    from skillmix.cli import main
    from skillmix.dataset_folder import writer as folder

    before = snapshot(finished)
    real, calls = folder._move, []

    def failing(source, target):  # the disk fills up on the third rename of the swap
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(folder, "_move", failing)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code = main(cmd(server, finished, 6)[3:])
    err = capsys.readouterr().err
    assert code == 1 and len(calls) == 3
    assert "No space left on device" in err and "the previous output was left as it was" in err
    assert snapshot(finished) == before
    assert not (finished / ".skillmix" / "swap.json").exists()
    monkeypatch.setattr(folder, "_move", real)
    assert main(cmd(server, finished, 6)[3:]) == 0 and accounted(finished, 6)


CRASH_IN_SWAP = """
import os, sys
from skillmix.dataset_folder import writer as folder
from skillmix.cli import main
real, calls = folder._move, []
def crash(source, target):  # the process dies in the middle of the swap, as under kill -9
    calls.append(target)
    if len(calls) == 4:
        os._exit(9)
    return real(source, target)
folder._move = crash
sys.exit(main(sys.argv[1:]))
"""


def test_a_swap_cut_short_by_a_crash_is_finished_by_the_next_run(finished, server):
    crashed = run([sys.executable, "-c", CRASH_IN_SWAP, *cmd(server, finished, 6)[3:]])
    assert crashed.returncode == 9
    assert (finished / ".skillmix" / "swap.json").exists()  # the plan of the unfinished swap
    sent = server.count(path=CHAT_PATH)
    result = run(cmd(server, finished, 6))
    assert result.returncode == 0, result.stderr[-3000:]
    assert server.count(path=CHAT_PATH) == sent  # everything was paid for already
    assert accounted(finished, 6) and not (finished / ".skillmix" / "swap.json").exists()
    assert sorted(p.name for p in finished.iterdir() if p.name.startswith("k")) == ["k2"]


def test_the_invariant_names_missing_rows():
    from skillmix.pipelines.output import RunFailed, RunResult

    result = RunResult(config=None, models=(), split=None)  # type: ignore[arg-type]
    result.drawn = ["a", "b", "c"]
    result.add([{"id": "a", "outcome": "kept"}, {"id": "c", "outcome": "failed"}])
    with pytest.raises(RunFailed, match=r"1 of 3 rows have no outcome \(b\)"):
        result.check_complete()
    result.add([{"id": "b", "outcome": "rejected"}])
    result.check_complete()


def test_a_broken_progress_display_fails_the_run(tmp_path):
    from skillmix.pipelines.progress import StageProgress

    progress = StageProgress(tmp_path, "run", total=3)
    progress._run = lambda: 1 / 0  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="the progress display failed: ZeroDivisionError"), progress:
        progress.start()
        time.sleep(0.1)


def _report_handlers(conn) -> None:
    conn.send([signal.getsignal(sig) == signal.SIG_DFL for sig in (signal.SIGINT, signal.SIGTERM)])


def test_a_process_forked_during_a_run_ends_on_sigterm_without_python(tmp_path):
    """distilabel's teardown terminates its workers and joins them: a Python handler inherited by a worker
    runs only when the worker returns to the interpreter, so a SIGTERM landing just before it blocks on a
    lock was lost and the run waited forever. Children of a guarded run get the default action."""
    import multiprocessing

    from skillmix.pipelines.interrupt import guarded

    fork = multiprocessing.get_context("fork")

    def handlers_in_child() -> list[bool]:
        parent, child = fork.Pipe()
        proc = fork.Process(target=_report_handlers, args=(child,))
        proc.start()
        got = parent.recv()
        proc.join(10)
        return got

    with guarded(tmp_path):
        assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # the run itself handles it
        assert handlers_in_child() == [True, True]
        lock = fork.Lock()
        lock.acquire()  # the child blocks on it, as a pool worker waits for its next task
        blocked = fork.Process(target=lock.acquire)
        blocked.start()
        time.sleep(0.2)
        blocked.terminate()
        blocked.join(10)
        assert blocked.exitcode == -signal.SIGTERM
    assert handlers_in_child() == [False, True]  # outside a run: pytest's own SIGINT handler is inherited


def test_a_finished_dataset_run_again_is_left_byte_identical(tmp_path, server):
    """The same command again finds nothing to do: exit 0, "already complete", every file of the dataset
    byte for byte as it was (the card of a $500 dataset keeps saying $500, not $0)."""
    out = tmp_path / "out"
    first = run_here(cmd(server, out, 4))
    assert first.returncode == 0, first.stderr[-3000:]
    before, sent = snapshot(out), server.count(path=CHAT_PATH)
    again = run_here(cmd(server, out, 4))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already complete" in again.stderr and server.count(path=CHAT_PATH) == sent
    assert snapshot(out) == before


def test_an_interrupted_and_resumed_build_records_what_the_server_billed(tmp_path, server):
    """The manifest's cost is the folder's over both runs, from the ledger: what the server billed."""
    prices = tmp_path / "prices.yaml"
    prices.write_text("fake-teacher: {input: 1000, output: 2000}\n")
    out = tmp_path / "out"
    args = cmd(server, out, 30, "--concurrency", "4", "--prices", str(prices))
    proc = subprocess.Popen(args, text=True, env=cli_env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while server.count(status=200, path=CHAT_PATH) < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-3000:]
    resumed = run(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    tokens = server.usage_totals()["fake-teacher"]
    billed = (tokens["prompt_tokens"] * 1000 + tokens["completion_tokens"] * 2000) / 1e6
    manifest = json.loads((out / "manifest.json").read_text())
    assert billed > 0 and manifest["cost_usd"] == pytest.approx(billed, abs=1e-6)
    runs = manifest["runs"]
    assert runs["count"] == 2 and 0 < runs["last_run"]["cost_usd"] < manifest["cost_usd"]
    assert manifest["wall_seconds"] > runs["last_run"]["wall_seconds"]
