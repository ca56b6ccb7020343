"""Batch mode against every case of the real Batch API that the strict fake scripts, one test each, on the
:class:`~skillmix.pipelines.batches.Batcher` itself (lines wanted in a run's cache, sent, waited for,
collected; no pipeline): a batch failed at validation, an account's refusal, errors naming lines, a
collection interrupted half way, batches adopted after a kill (teacher and judge at different prices, a
provider that lists none, one that keeps no metadata), U+2028 in a reply, a batch the provider forgot,
cancelling with partial output, which statuses are retried, expiries, and a re-run sending what was given
up. The ledger is checked against what the fake billed in every case that bills."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from skillmix.llm.batch import BatchAPIClient, BatchRefused
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.batch_collect import Collector
from skillmix.pipelines.batches import Batcher
from skillmix.testing.fake_openai import FakeOpenAIServer, Reply, ScriptedResponder
from skillmix.testing.fake_openai.batches import BatchBehaviour, enqueued_token_limit

PRICES = PriceTable(prices={"fake-teacher": (0.0, 1000.0), "fake-judge": (0.0, 4000.0)})


def endpoint(server, model: str = "fake-teacher") -> dict:
    return {"model": model, "base_url": server.base_url, "api_key_env": "OPENAI_API_KEY"}


def want(batcher: Batcher, server, n: int, model: str = "fake-teacher") -> list[str]:
    keys = []
    for i in range(n):
        body = {
            "model": model,
            "messages": [{"role": "user", "content": f"{model} says {i}"}],
            "max_tokens": 20,
        }
        keys.append(f"{model}-{i}")
        batcher.cache.want(keys[-1], endpoint(server, model), body, 0.1)
    return keys


def batcher(tmp_path: Path, cap: float | None = None, retries: int = 2) -> tuple[Batcher, list[str]]:
    logs: list[str] = []
    return Batcher(tmp_path / "work", PRICES, cap, retries, logs.append, poll=0.01), logs


def rounds(b: Batcher, limit: int = 10) -> int:
    """What the driver does: send what is wanted and wait, until nothing is (returns how many rounds)."""
    for n in range(limit):
        if not b.wanted():
            return n
        b.submit("round1")
        b.wait()
    raise AssertionError(f"still wanted after {limit} rounds")


def states(b: Batcher) -> dict[str, str]:
    return {line["key"]: line["state"] for line in b.cache.batch_lines()}


def ledger(b: Batcher) -> dict[str, float]:
    return {model: row["usd"] for model, row in b.cache.spend_by_model().items()}


def billed(server) -> dict[str, float]:
    """What the fake billed, by model, at the batch price."""
    return {model: PRICES.cost(model, u["prompt_tokens"], u["completion_tokens"], batch=True)
            for model, u in server.batch_api.usage_totals().items()}  # fmt: skip


def test_a_batch_failed_at_validation_shows_its_errors_and_its_lines_end_after_the_retries(tmp_path):
    error = [
        {"code": "invalid_file", "line": None, "message": "The input file is unreadable.", "param": None}
    ]
    with FakeOpenAIServer(batches=BatchBehaviour(refuse=lambda n, lines: error)) as server:
        b, logs = batcher(tmp_path, retries=1)
        keys = want(b, server, 3)
        assert rounds(b) == 2  # the first batch and one retry: no endless loop
        assert len(server.batch_api.created()) == 2
    assert set(states(b).values()) == {"failed"} and b.stats["failed"] == 3
    assert all(
        "invalid_file: The input file is unreadable." in line["error"] for line in b.cache.batch_lines()
    )
    assert sum("failed validation: invalid_file" in line for line in logs) == 2
    b.reattach()  # the same command again: what was given up is wanted again
    assert not states(b) and keys


def test_an_account_refusal_stops_the_run_with_the_providers_message(tmp_path):
    refuse = BatchBehaviour(refuse=lambda n, lines: enqueued_token_limit() if n == 0 else None)
    with FakeOpenAIServer(batches=refuse) as server:
        b, _ = batcher(tmp_path)
        want(b, server, 3)
        b.submit("round1")
        with pytest.raises(BatchRefused, match=r"Enqueued token limit reached.*run the same command again"):
            b.wait()
        assert {line["attempts"] for line in b.cache.batch_lines()} == {0} and len(b.wanted()) == 3
        again, _ = batcher(tmp_path)
        assert rounds(again) == 1 and set(states(again).values()) == {"answered"}


def test_errors_naming_lines_end_those_lines_and_only_those(tmp_path):
    bad = [{"code": "invalid_value", "line": 2, "message": "temperature is out of range", "param": "body"}]
    with FakeOpenAIServer(batches=BatchBehaviour(refuse=lambda n, lines: bad if n == 0 else None)) as server:
        b, _ = batcher(tmp_path)
        keys = want(b, server, 3)
        assert rounds(b) == 2
    assert set(states(b).values()) == {"answered"}
    assert b.cache.get(keys[1])["status"] == "invalid_request"  # the file's second line
    assert [b.cache.get(k)["status"] for k in (keys[0], keys[2])] == ["ok", "ok"]
    assert {line["attempts"] for line in b.cache.batch_lines()} == {0}


def test_a_collection_stopped_half_way_is_done_again_whole_and_billed_once(tmp_path, monkeypatch):
    with FakeOpenAIServer() as server:
        b, _ = batcher(tmp_path)
        want(b, server, 4)
        b.submit("round1")
        original, seen = Collector.line, []

        def ctrl_c_at_the_third(self, line, result):
            seen.append(line["key"])
            if len(seen) == 3:
                raise KeyboardInterrupt
            original(self, line, result)

        monkeypatch.setattr(Collector, "line", ctrl_c_at_the_third)
        with pytest.raises(KeyboardInterrupt):
            b.wait()
        monkeypatch.setattr(Collector, "line", original)
        assert ledger(b) == {} and set(states(b).values()) == {"submitted"}  # rolled back whole
        again, _ = batcher(tmp_path)
        again.reattach()
        again.wait()
        record = again.cache.batch_records()[0]
        again.collector.collect(record, BatchAPIClient(server.base_url, None).retrieve(record["id"]))  # twice
        assert ledger(again) == pytest.approx(billed(server)) and set(states(again).values()) == {"answered"}


def forget_the_records(b: Batcher) -> None:
    """As if the run had been killed between each create call and its record."""
    db = sqlite3.connect(b.cache.path)
    db.execute("DELETE FROM batches")
    db.execute("UPDATE batch_lines SET state = 'uploading', batch_id = NULL")
    db.commit()
    db.close()


@pytest.mark.parametrize("profile", ["lists", "no metadata", "no listing"])
def test_batches_left_by_a_killed_run_are_adopted_and_priced_by_their_own_role(tmp_path, profile):
    behaviour = BatchBehaviour(
        turnaround=0.2, metadata=profile != "no metadata", listing=profile != "no listing"
    )
    with FakeOpenAIServer(batches=behaviour) as server:
        b, _ = batcher(tmp_path)
        want(b, server, 2, "fake-teacher")
        want(b, server, 2, "fake-judge")  # the same server, another role at another price
        b.submit("round1")
        forget_the_records(b)
        b.close()
        again, logs = batcher(tmp_path)
        again.reattach()
        adopted = sum("adopted batch" in line for line in logs)
        assert adopted == (0 if profile == "no listing" else 2), logs
        again.wait()  # what the driver does after re-attaching
        rounds(again)
        created = len(server.batch_api.created())
        assert created == (4 if profile == "no listing" else 2)  # without a listing: sent again (the window)
        if profile != "no listing":
            assert ledger(again) == pytest.approx(billed(server))
            assert set(ledger(again)) == {"fake-teacher", "fake-judge"}
        lists = [c for c in server.batch_api.calls if c.method == "GET" and c.path == "/v1/batches"]
        assert len(lists) == 1  # one server and key, two roles: listed once


def test_a_reply_with_line_separators_is_read_whole(tmp_path):
    text = "first\u2028second\u2029third\u0085fourth"
    with FakeOpenAIServer(responder=ScriptedResponder([Reply(content=text)] * 2)) as server:
        b, _ = batcher(tmp_path)
        keys = want(b, server, 2)
        assert rounds(b) == 1
    assert [b.cache.get(k)["text"] for k in keys] == [text, text]


def test_a_batch_the_provider_forgot_is_lost_and_its_lines_sent_again(tmp_path):
    with FakeOpenAIServer(batches=BatchBehaviour(turnaround=30)) as server:
        b, logs = batcher(tmp_path)
        keys = want(b, server, 3)
        b.submit("round1")
        first = server.batch_api.created()[0]
        b.cache.put(keys[0], {}, {"text": "kept", "status": "ok"})  # answered meanwhile: not sent again
        server.batch_api.forget(first)
        server.batch_api.behaviour.turnaround = 0
        b.wait()  # the batch is lost: its lines are wanted again
        assert rounds(b) == 1
    assert any(f"batch {first} is no longer known" in line for line in logs)
    assert states(b) == dict.fromkeys(keys, "answered") and b.cache.get(keys[0])["text"] == "kept"
    assert b.cache.batch_records()[0]["status"] == "lost" and b.stats["lost"] == 1


def test_a_cancelled_batch_keeps_its_partial_output_and_sends_the_rest_again(tmp_path):
    with FakeOpenAIServer(batches=BatchBehaviour(turnaround=30, cancel_seconds=0.1)) as server:
        b, _ = batcher(tmp_path)
        want(b, server, 4)
        b.submit("round1")
        client = BatchAPIClient(server.base_url, None)
        assert client.cancel(server.batch_api.created()[0])["status"] == "cancelling"
        b.wait()
        assert [line["attempts"] for line in b.cache.batch_lines()].count(1) == 2  # the half not run
        server.batch_api.behaviour.turnaround = 0
        rounds(b)
    assert set(states(b).values()) == {"answered"} and ledger(b) == pytest.approx(billed(server))


def test_only_retryable_statuses_are_retried_and_expiries_count(tmp_path):
    seen: set[str] = set()

    def fail(line):
        if line["custom_id"].endswith("-0"):
            return 401  # a bad key: a new batch would get the same
        if line["custom_id"] not in seen:
            seen.add(line["custom_id"])
            return 503
        return None

    with FakeOpenAIServer(batches=BatchBehaviour(fail=fail)) as server:
        b, _ = batcher(tmp_path)
        keys = want(b, server, 2)
        rounds(b)
        assert states(b) == {keys[0]: "failed", keys[1]: "answered"}
        assert (
            "HTTP 401" in b.cache.batch_line(keys[0])["error"]
            and b.cache.batch_line(keys[0])["attempts"] == 0
        )
    with FakeOpenAIServer(batches=BatchBehaviour(expire=10)) as server:
        b, _ = batcher(tmp_path / "expiring", retries=1)
        want(b, server, 4)
        assert rounds(b) == 2
        assert sorted(states(b).values()) == ["answered"] * 3 + ["failed"]  # 2 run, then 1 of the other 2


KILLED_WAIT = """
import sys
from pathlib import Path
from skillmix.llm.prices import PriceTable
from skillmix.pipelines.batches import Batcher
Batcher(Path(sys.argv[1]), PriceTable(prices={"fake-teacher": (0.0, 1000.0)}), None, 2, poll=0.01).wait()
"""


@pytest.mark.slow  # about 5 s each
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_a_sigkill_while_a_batch_is_collected_bills_it_once(tmp_path, delay):
    """A real SIGKILL of the collecting process, just as it read the output file, and 0.3 s later (collecting
    3,000 lines took about 0.6 s here, so the kill lands inside the collection's transaction): nothing of
    the batch is kept half, and the next run's ledger is what the fake billed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    with FakeOpenAIServer() as server:
        b, _ = batcher(tmp_path)
        want(b, server, 3000)
        b.submit("round1")
        b.close()
        api = server.batch_api
        run = subprocess.Popen([sys.executable, "-c", KILLED_WAIT, str(tmp_path / "work")],
                               start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while not any(c.path.endswith("/content") for c in api.calls):
            assert run.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(delay)
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        again, _ = batcher(tmp_path)
        assert set(ledger(again)) <= {"fake-teacher"}
        killed_at = len(again.cache.batch_lines("state = 'answered'"))
        assert killed_at in (0, 3000)  # never a part of the batch: one transaction
        again.reattach()
        again.wait()
        assert ledger(again) == pytest.approx(billed(server)) and len(api.billed) == 3000
        assert set(states(again).values()) == {"answered"}
