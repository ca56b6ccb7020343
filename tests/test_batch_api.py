"""The fake server's batch API and skillmix's batch client against it: files, batches with a turnaround,
partial failures, expiry, cancel, list by run tag, the limits of one file; and no abbreviated flag is ever
taken for a longer one."""

from __future__ import annotations

import time

import pytest

from skillmix.llm.batch import BatchAPIClient, BatchUnsupported, chunks, request_line
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder
from skillmix.testing.fake_openai.batches import BatchBehaviour


def body(i: int) -> dict:
    return {"model": "fake", "messages": [{"role": "user", "content": f"Say hello {i}."}], "max_tokens": 20}


def lines(n: int) -> list[tuple[str, bytes]]:
    return [(f"line-{i}", request_line(f"line-{i}", body(i))) for i in range(n)]


def wait(client: BatchAPIClient, batch_id: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (batch := client.retrieve(batch_id))["status"] not in (
        "completed",
        "failed",
        "expired",
        "cancelled",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return batch


def test_a_batch_is_answered_as_the_direct_requests_would_be():
    with FakeOpenAIServer(
        responder=SkillMixResponder(seed=1), batches=BatchBehaviour(turnaround=0.3)
    ) as server:
        client = BatchAPIClient(server.base_url, None)
        client.check()
        file_id = client.upload(lines(5), "round1.jsonl")
        batch = client.create(file_id, run_tag="run-1", stage="round1")
        assert batch["status"] == "validating" and batch["metadata"]["skillmix_run"] == "run-1"
        assert batch["metadata"]["skillmix_input_file"] == file_id
        assert client.retrieve(batch["id"])["status"] == "in_progress"  # before the turnaround
        done = wait(client, batch["id"])
        assert done["status"] == "completed" and done["request_counts"] == {
            "total": 5,
            "completed": 5,
            "failed": 0,
        }
        results = client.results(done)
        assert set(results) == {f"line-{i}" for i in range(5)}
        direct = [server_reply(server, body(i)) for i in range(5)]
        assert [results[f"line-{i}"].body["choices"][0]["message"]["content"] for i in range(5)] == direct
        found = client.of_run("run-1", set(), since=0)
        assert [b["id"] for b in found] == [batch["id"]] and client.of_run("other", set(), since=0) == []
        assert [b["id"] for b in client.of_run("other", {file_id}, since=0)] == [batch["id"]]  # by its file
        assert client.of_run("run-1", set(), since=time.time() + 10) == []  # older than the run: not listed


def server_reply(server, request: dict) -> str:
    import httpx

    answer = httpx.post(f"{server.base_url}/chat/completions", json=request, timeout=30).json()
    return answer["choices"][0]["message"]["content"]


def test_failed_and_expired_lines_and_cancel():
    failing = BatchBehaviour(fail=lambda line: 500 if line["custom_id"] in ("line-1", "line-3") else None)
    with FakeOpenAIServer(batches=failing) as server:
        client = BatchAPIClient(server.base_url, None)
        done = wait(client, client.create(client.upload(lines(4), "a.jsonl"), "r", "grade")["id"])
        results = client.results(done)
        assert done["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
        assert {k: r.status for k, r in results.items()} == {"line-0": 200, "line-1": 500, "line-2": 200,
                                                             "line-3": 500}  # fmt: skip
    with FakeOpenAIServer(batches=BatchBehaviour(expire=1)) as server:
        client = BatchAPIClient(server.base_url, None)
        done = wait(client, client.create(client.upload(lines(4), "a.jsonl"), "r", "grade")["id"])
        results = client.results(done)
        assert done["status"] == "expired" and [results[f"line-{i}"].status for i in range(4)] == [
            200,
            200,
            None,
            None,
        ]
        assert results["line-3"].code == "batch_expired"
    with FakeOpenAIServer(batches=BatchBehaviour(turnaround=60)) as server:
        client = BatchAPIClient(server.base_url, None)
        batch = client.create(client.upload(lines(2), "a.jsonl"), "r", "round1")
        assert client.cancel(batch["id"])["status"] == "cancelling"
        assert wait(client, batch["id"])["status"] == "cancelled"


def test_the_limits_of_one_file():
    encoded = lines(7)
    assert [len(c) for c in chunks(encoded, max_requests=3)] == [3, 3, 1]
    size = len(encoded[0][1])
    assert [len(c) for c in chunks(encoded, max_bytes=2 * size + 1)] == [2, 2, 2, 1]
    with FakeOpenAIServer(batches=BatchBehaviour(max_requests=2)) as server:
        client = BatchAPIClient(server.base_url, None)
        import openai

        with pytest.raises(openai.BadRequestError, match="more than 2 requests"):
            client.create(client.upload(lines(3), "big.jsonl"), "r", "round1")


def test_a_server_without_a_batch_api_is_refused():
    with FakeOpenAIServer(batches=None) as server, pytest.raises(BatchUnsupported, match="no batch API"):
        BatchAPIClient(server.base_url, None).check()


def test_no_flag_is_taken_for_an_abbreviation(capsys):
    from skillmix.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dataset", "--batch", "4", "--dry-run"])  # --batch is not --batch-size
    assert info.value.code == 2 and "unrecognized arguments: --batch" in capsys.readouterr().err
    import argparse

    from skillmix.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from parsers(sub)

    assert all(not p.allow_abbrev for p in parsers(build_parser()))
