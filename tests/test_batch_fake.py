"""The fake batch API is at least as strict as OpenAI's reference (the rules and their sources are in
``skillmix.testing.fake_openai.batch_rules``): every refusal of an upload, a create and a list; line
validation that fails a batch with ``errors`` naming lines; the whole life cycle, cancelling with partial
output; scripted account refusals; the provider profiles (no listing, no metadata, no batch API); a batch
the provider forgets; output with U+2028 read line by line. All through the real openai SDK."""

from __future__ import annotations

import json
import time

import openai
import pytest

from skillmix.llm.batch import BatchAPIClient, BatchLost, BatchUnsupported, request_line
from skillmix.testing.fake_openai import FakeOpenAIServer, Reply, ScriptedResponder
from skillmix.testing.fake_openai.batches import BatchBehaviour, enqueued_token_limit


def body(i: int, model: str = "fake") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": f"Say hello {i}."}], "max_tokens": 20}


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def requests(n: int, **changes) -> list[dict]:
    return [{"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body(i),
             **changes} for i in range(n)]  # fmt: skip


def sdk(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def upload(client: openai.OpenAI, data: bytes, name: str = "in.jsonl", purpose: str = "batch") -> str:
    return client.files.create(file=(name, data, "application/jsonl"), purpose=purpose).id  # type: ignore[arg-type]


def create(client: openai.OpenAI, file_id: str, **changes):
    args = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **changes,
    }
    return client.batches.create(**args)


def settle(client: openai.OpenAI, batch, timeout: float = 20) -> list[str]:
    """Every status the batch (as created or last seen) shows, look after look, until it ends."""
    batch_id, seen, deadline = batch.id, [batch.status], time.monotonic() + timeout
    while seen[-1] not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, seen
        status = client.batches.retrieve(batch_id).status
        if not seen or seen[-1] != status:
            seen.append(status)
    return seen


def test_uploads_creates_and_lists_outside_the_reference_are_refused():
    with FakeOpenAIServer() as server:
        client = sdk(server)
        with pytest.raises(openai.BadRequestError, match="purpose"):
            upload(client, jsonl(requests(1)), purpose="batches")
        with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
            upload(client, jsonl(requests(1)), name="in.txt")
        good = upload(client, jsonl(requests(2)))
        other = upload(client, jsonl(requests(2)), purpose="user_data")
        refusals = [
            ({"completion_window": "48h"}, "completion_window"),
            ({"endpoint": "/v1/chat"}, "endpoint"),
            ({"endpoint": "/v1/embeddings"}, "serves batches of"),  # in the reference, not served here
            ({"input_file_id": other}, "purpose 'batch'"),
            ({"input_file_id": "file-nope"}, "No such File"),
            ({"metadata": {f"k{i}": "v" for i in range(17)}}, "16 key-value pairs"),
            ({"metadata": {"k" * 65: "v"}}, "64 characters"),
            ({"metadata": {"k": "v" * 513}}, "512 characters"),
        ]
        for changes, message in refusals:
            with pytest.raises(openai.BadRequestError, match=message):
                create(client, changes.pop("input_file_id", good), **changes)
        assert create(client, good, metadata={f"k{i}": "v" * 512 for i in range(16)}).status == "validating"
        for limit in (0, 101):
            with pytest.raises(openai.BadRequestError, match="between 1 and 100"):
                client.batches.list(limit=limit)
        ids = [create(client, good).id for _ in range(3)]
        page = client.batches.list(limit=2)
        assert page.has_more and len(page.data) == 2
        rest = client.batches.list(limit=2, after=page.data[-1].id)
        assert not rest.has_more and len(rest.data) == 2
        assert {b.id for b in client.batches.list(limit=2)} >= set(ids)  # the SDK pages on has_more, after


def test_lines_that_break_a_rule_fail_the_batch_with_errors_naming_them():
    lines = requests(5)
    lines[1]["custom_id"] = "line-0"  # a duplicate
    lines[2]["url"] = "/v1/completions"
    lines[3]["method"] = "GET"
    lines[4]["body"] = body(4, model="another")  # a second model in one file
    with FakeOpenAIServer() as server:
        client = sdk(server)
        batch = create(client, upload(client, jsonl(lines) + b"{not json\n"))
        assert settle(client, batch) == ["validating", "failed"]
        failed = client.batches.retrieve(batch.id)
        codes = {e.line: e.code for e in failed.errors.data}
        assert codes == {2: "duplicate_custom_id", 3: "invalid_url", 4: "invalid_method",
                         5: "mismatched_model", 6: "invalid_json_line"}  # fmt: skip
        assert failed.failed_at and not failed.output_file_id and server.batch_api.billed == []


def test_the_life_cycle_and_an_account_refusal():
    refuse = BatchBehaviour(
        turnaround=0.3, refuse=lambda n, lines: enqueued_token_limit() if n == 0 else None
    )
    with FakeOpenAIServer(batches=refuse) as server:
        client = sdk(server)
        file_id = upload(client, jsonl(requests(3)))
        first = create(client, file_id)
        assert settle(client, first) == ["validating", "failed"]
        error = client.batches.retrieve(first.id).errors.data[0]
        assert error.code == "token_limit_exceeded" and error.line is None and "Enqueued" in error.message
        second = create(client, file_id)
        assert settle(client, second) == ["validating", "in_progress", "finalizing", "completed"]
        done = client.batches.retrieve(second.id)
        assert done.request_counts.completed == 3 and done.model == "fake" and done.completed_at
        assert done.finalizing_at and done.in_progress_at


def test_cancelling_then_cancelled_with_partial_output():
    with FakeOpenAIServer(batches=BatchBehaviour(turnaround=60, cancel_seconds=0.2)) as server:
        client = sdk(server)
        batch = create(client, upload(client, jsonl(requests(4))))
        client.batches.retrieve(batch.id)  # in progress
        cancelling = client.batches.cancel(batch.id)
        assert settle(client, cancelling) == ["cancelling", "cancelled"]
        results = BatchAPIClient(server.base_url, None).results(
            client.batches.retrieve(batch.id).model_dump()
        )
        assert sorted(results) == ["line-0", "line-1"] and len(server.batch_api.billed) == 2  # half ran
        with pytest.raises(openai.BadRequestError, match="Cannot cancel"):
            client.batches.cancel(batch.id)


def test_provider_profiles_and_a_forgotten_batch():
    for absent in (404, 501):
        with (
            FakeOpenAIServer(batches=BatchBehaviour(absent=absent)) as server,
            pytest.raises(BatchUnsupported, match=f"answered {absent}"),
        ):
            BatchAPIClient(server.base_url, None).check()
    with FakeOpenAIServer(batches=BatchBehaviour(listing=False, metadata=False)) as server:
        client = BatchAPIClient(server.base_url, None)
        assert client.check() is False  # 405: batches, but no listing
        assert client.of_run("tag", set(), 0) is None
        with pytest.raises(openai.APIStatusError, match="not allowed"):
            sdk(server).batches.list()
        created = client.create(
            client.upload([("a", request_line("a", body(0)))], "a.jsonl"), "tag", "round1"
        )
        assert created["metadata"] is None
        server.batch_api.forget(created["id"])
        with pytest.raises(BatchLost):
            client.retrieve(created["id"])


def test_output_is_read_line_by_line_and_a_bad_line_is_counted():
    text = "one\u2028two\u2029three\u0085four"
    with FakeOpenAIServer(responder=ScriptedResponder([Reply(content=text)] * 3)) as server:
        client = BatchAPIClient(server.base_url, None)
        batch = client.create(client.upload([(f"x{i}", request_line(f"x{i}", body(i))) for i in range(3)],
                                            "x.jsonl"), "tag", "round1")  # fmt: skip
        while (done := client.retrieve(batch["id"]))["status"] != "completed":
            time.sleep(0.01)
        raw = server.batch_api.files[done["output_file_id"]]["bytes"]
        assert "\u2028".encode() in raw  # written raw, as UTF-8
        server.batch_api.files[done["output_file_id"]]["bytes"] = raw + b'{"custom_id": "x9", "resp\n'
        results, bad = client.read(done)
        assert bad == 1 and sorted(results) == ["x0", "x1", "x2"]
        assert results["x1"].body["choices"][0]["message"]["content"] == text
