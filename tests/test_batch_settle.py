"""One rule for settling a batch output line (:mod:`skillmix.pipelines.batch_settle`), the same for the batch
API and for batch files: each kind of line ends as the rule says (answer, invalid, retried, given up),
priced at the caller's price, its reservation settled as the cap needs; and both callers go through it."""

from __future__ import annotations

import json

import pytest

from skillmix.llm.batch import LineResult
from skillmix.llm.cache import RequestCache
from skillmix.llm.prices import PriceTable
from skillmix.pipelines import batch_settle
from skillmix.pipelines.batch_collect import Collector
from skillmix.pipelines.batch_files import BatchFiles
from skillmix.pipelines.batch_settle import NOT_RUN, LineSettler

MODEL = "fake-teacher"
ENDPOINT = {"model": MODEL, "base_url": "http://127.0.0.1:9/v1", "api_key_env": "OPENAI_API_KEY"}
PRICES = PriceTable(prices={MODEL: (1.0, 2.0)})
ROW = "batchrow:r1"


def reply(text: str | None = "An answer.", prompt: int = 100, completion: int = 50) -> dict:
    return {"object": "chat.completion", "model": MODEL, "usage": {"prompt_tokens": prompt,
            "completion_tokens": completion}, "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}}]}  # fmt: skip


def setup(tmp_path, batch_price: bool, retries: int = 1) -> tuple[RequestCache, LineSettler, dict]:
    """A cache with one wanted line of row r1 (its row holds $1 reserved, the line's worst case $0.25)."""
    cache = RequestCache(tmp_path / "cache.sqlite")
    cache.want("k1", ENDPOINT, {"messages": []}, 0.25, (ROW, 1.0), stage="round1")
    assert cache.reserve(ROW, 1.0, cap=10.0)
    stats = {"retried": 0, "failed": 0, "invalid": 0, "saved_usd": 0.0}
    unit = "batches" if batch_price else "batch files"
    return cache, LineSettler(cache, PRICES, retries, stats, batch_price=batch_price, unit=unit), stats


def held(cache: RequestCache) -> dict[str, float]:
    with cache.transaction() as db:
        return {rid: round(usd, 9) for rid, usd in db.execute("SELECT id, usd FROM reservations")}


@pytest.mark.parametrize("batch_price", [True, False], ids=["batch API", "batch files"])
def test_an_answer_is_billed_at_the_callers_price_stored_and_drawn_from_its_row(tmp_path, batch_price):
    cache, settler, stats = setup(tmp_path, batch_price)
    settler.settle(cache.batch_line("k1"), 200, reply(), None)
    direct = (100 * 1.0 + 50 * 2.0) / 1e6
    usd = direct / 2 if batch_price else direct
    assert cache.spent_usd() == pytest.approx(usd)
    assert stats["saved_usd"] == pytest.approx(direct - usd)
    answer = cache.get("k1")
    assert (
        answer["text"] == "An answer." and answer["cost_usd"] == pytest.approx(usd) and "cached" not in answer
    )
    assert cache.batch_line("k1")["state"] == "answered" and held(cache) == {ROW: 0.75}


@pytest.mark.parametrize(
    ("status", "body", "message", "state", "error"),
    [
        (400, None, "too long", "answered", None),  # invalid: final, cached
        (422, None, None, "answered", None),
        (500, None, "engine died", "wanted", "engine died"),  # retryable: sent again, the try counted
        (429, None, None, "wanted", "HTTP 429"),
        (None, None, "expired", "wanted", "expired"),  # not run (expired, cancelled, missing)
        (None, None, None, "wanted", NOT_RUN),
        (404, None, "The model `x` does not exist.", "failed", "HTTP 404: The model `x` does not exist."),
        (401, None, None, "failed", "HTTP 401: no message"),  # the same again would fail the same way
        (200, None, None, "failed", "HTTP 200: no message"),  # a 200 without a body
    ],
)
def test_each_kind_of_line_ends_as_the_rule_says(tmp_path, status, body, message, state, error):
    cache, settler, stats = setup(tmp_path, batch_price=False)
    settler.settle(cache.batch_line("k1"), status, body, message)
    line = cache.batch_line("k1")
    assert (line["state"], line["error"]) == (state, error)
    assert cache.spent_usd() == 0
    if state == "answered":
        assert cache.get("k1")["status"] == "invalid_request" and stats["invalid"] == 1
        assert held(cache) == {ROW: 0.75}  # its worst case drawn: the row goes on without it
    elif state == "wanted":
        assert line["attempts"] == 1 and stats["retried"] == 1 and cache.get("k1") is None
        assert held(cache) == {ROW: 1.0}  # held whole for the next send of the line
    else:
        assert stats["failed"] == 1 and held(cache) == {ROW: 0.75} and cache.get("k1") is None


def test_a_retried_line_is_given_up_past_the_retries_with_its_tries_counted(tmp_path):
    cache, settler, stats = setup(tmp_path, batch_price=True, retries=1)
    settler.settle(cache.batch_line("k1"), 503, None, "busy")
    settler.settle(cache.batch_line("k1"), 503, None, "busy")
    line = cache.batch_line("k1")
    assert (line["state"], line["error"], stats["retried"], stats["failed"]) == (
        "failed", "busy (after 2 batches)", 1, 1,
    )  # fmt: skip


def test_an_empty_reply_is_billed_and_asked_again_on_a_reservation_of_its_own(tmp_path):
    cache, settler, _ = setup(tmp_path, batch_price=False, retries=2)
    settler.settle(cache.batch_line("k1"), 200, reply(text=""), None)
    line = cache.batch_line("k1")
    assert (line["state"], line["error"], line["attempts"]) == ("wanted", "empty completion", 1)
    assert cache.spent_usd() == pytest.approx(200 / 1e6) and cache.get("k1") is None
    assert (line["reservation"], line["reserve_usd"]) == ("batch:k1", 0.25)
    assert held(cache) == {ROW: 0.75}


def test_the_batch_api_and_batch_files_settle_their_lines_through_the_one_rule(tmp_path, monkeypatch):
    seen = []
    real = LineSettler.settle

    def spy(self, line, status, body, message):
        seen.append((self.batch_price, status, message))
        return real(self, line, status, body, message)

    monkeypatch.setattr(batch_settle.LineSettler, "settle", spy)
    cache, _, stats = setup(tmp_path, batch_price=True)
    batcher = type(
        "B", (), {"cache": cache, "prices": PRICES, "stats": stats, "log": print, "max_retries": 1}
    )
    error = {"error": {"message": "busy", "code": 503}}
    Collector(batcher).line(cache.batch_line("k1"), LineResult("k1", 503, error))
    cache.close()
    files = BatchFiles(tmp_path / "work", tmp_path / "files", PRICES, None, 1, log=lambda m: None)
    files.claim(tmp_path / "out")
    files.cache.want("k2", ENDPOINT, {"messages": [{"role": "user", "content": "Hi"}]}, 0.0, stage="round1")
    files.write()
    line = {"custom_id": "k2", "response": {"status_code": 503, "body": None}, "error": error}
    (tmp_path / "files" / "round1-1.out.jsonl").write_text(json.dumps(line) + "\n")
    files.import_outputs()
    assert seen == [(True, 503, "busy"), (False, 503, "busy")]
    assert files.cache.batch_line("k2")["state"] == "wanted"


def test_one_reader_for_every_output_line():
    """OpenAI's output and error lines, vllm run-batch's (an error beside a response), and what cannot be
    read: the batch API and batch files read them with the same function."""
    from skillmix.llm.batch import parse_output_line

    def read(line):
        return parse_output_line(json.dumps(line, ensure_ascii=False).encode())

    answer = {"choices": [{"message": {"content": "A\u2028B"}}]}
    ok = read({"custom_id": "a", "response": {"status_code": 200, "body": answer}, "error": None})
    assert (ok.custom_id, ok.status, ok.body, ok.code, ok.message) == ("a", 200, answer, None, None)
    expired = read(
        {"custom_id": "b", "response": None, "error": {"code": "batch_expired", "message": "late"}}
    )
    assert (expired.status, expired.code, expired.message) == (None, "batch_expired", "late")
    vllm = read({"custom_id": "c", "response": {"status_code": 400, "body": None}, "error": "too long"})
    assert (vllm.status, vllm.message) == (400, "too long")
    bare = read({"custom_id": "d", "error": "engine died"})
    assert (bare.status, bare.body, bare.message) == (None, {"message": "engine died"}, "engine died")
    refused = read(
        {"custom_id": "e", "response": {"status_code": 429, "body": {"error": {"message": "slow"}}}}
    )
    assert refused.message == "slow"
    assert parse_output_line(b'{"custom_id": "f", "respo') == "not a JSON line (cut short?)"
    assert parse_output_line(b"\xff\xfe") == "not a JSON line (cut short?)"
    assert read({"response": {"status_code": 200, "body": answer}}) == "no custom_id"
    assert read({"custom_id": "g"}) == "neither a response nor an error"
