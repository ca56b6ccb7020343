"""The fake OpenAI server, driven by the real ``openai`` clients (sync and async)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from skillmix.catalog import load_catalog
from skillmix.grading import parse_grade
from skillmix.prompts import PromptSet
from skillmix.sampling import sample_combinations
from skillmix.testing.fake_openai import (
    CHAT_PATH,
    FakeOpenAIServer,
    Fault,
    Reply,
    ScriptedResponder,
    SkillMixResponder,
    parse_fault,
    request_key,
)
from skillmix.text import count_sentences, extract_answer, max_sentences

openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def client(server: FakeOpenAIServer, **kwargs):
    kwargs.setdefault("api_key", "test")
    return openai.OpenAI(base_url=server.base_url, max_retries=0, **kwargs)


def async_client(server: FakeOpenAIServer, **kwargs):
    kwargs.setdefault("api_key", "test")
    return openai.AsyncOpenAI(base_url=server.base_url, max_retries=0, **kwargs)


@pytest.fixture(scope="module")
def combos():
    return sample_combinations(load_catalog(), 3, 40, seed=0)


# ------------------------------------------------------------------------------------------------------
# Protocol basics
# ------------------------------------------------------------------------------------------------------


def test_chat_completion_has_content_usage_and_is_recorded():
    with FakeOpenAIServer(ScriptedResponder(["hello world from fake"])) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        messages = [{"role": "system", "content": "be brief"}, *user("say  hello\nplease")]
        reply = client(server).chat.completions.create(
            model="fake-teacher", messages=messages, temperature=0.7, seed=3, max_tokens=50
        )
        assert reply.object == "chat.completion"
        assert reply.model == "fake-teacher"
        assert reply.choices[0].message.content == "hello world from fake"
        assert reply.choices[0].finish_reason == "stop"
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (5, 4)
        assert reply.usage.total_tokens == 9
        [record] = server.requests
        assert record.body["messages"] == messages and record.body["seed"] == 3
        assert record.key == request_key(record.body)
        assert (record.attempt, record.status, record.path, record.hung) == (0, 200, CHAT_PATH, False)
        assert server.count() == server.count(status=200) == 1
        assert server.distinct_keys() == {record.key}


def test_models_not_found_and_bad_requests():
    with FakeOpenAIServer(model="teacher-x") as server:
        api = client(server)
        assert [m.id for m in api.models.list()] == ["teacher-x"]
        assert api.models.retrieve("teacher-x").id == "teacher-x"
        with pytest.raises(openai.NotFoundError):
            api.models.retrieve("other")
        with httpx.Client() as http:
            missing = http.post(server.base_url + "/embeddings", json={"input": "x"})
            text = http.post(server.base_url + "/completions", json={"model": "teacher-x", "prompt": "Hi"})
            broken = http.post(server.base_url + "/chat/completions", content=b"{nope")
            empty = http.post(server.base_url + "/chat/completions", json={"model": "m", "messages": []})
        assert missing.status_code == 404
        error = missing.json()["error"]
        assert error["type"] and "/v1/embeddings" in error["message"]
        assert text.status_code == 200 and text.json()["object"] == "text_completion"  # a base model's
        assert text.json()["choices"][0]["text"]
        assert broken.status_code == 400 and "JSON" in broken.json()["error"]["message"]
        assert empty.status_code == 400
        assert server.count(status=404) == 2 and server.count(status=400) == 2
        assert server.count(path=CHAT_PATH) == 2


def test_wrong_api_key_gets_401():
    with FakeOpenAIServer(api_key="sesame") as server:
        with pytest.raises(openai.AuthenticationError) as info:
            client(server, api_key="wrong").chat.completions.create(model="m", messages=user("hi"))
        assert info.value.status_code == 401
        assert info.value.body["type"] == "invalid_request_error"
        ok = client(server, api_key="sesame").chat.completions.create(model="m", messages=user("hi"))
        assert ok.choices[0].message.content
        assert (server.count(status=401), server.count(status=200)) == (1, 1)


def test_429_carries_retry_after_and_500_is_internal_server_error():
    faults = [
        Fault(status=429, retry_after=0.5, match="slow", attempts=None),
        Fault(status=500, rate=1.0, seed=1, attempts=None),
    ]
    with FakeOpenAIServer(faults=faults) as server:
        api = client(server)
        with pytest.raises(openai.RateLimitError) as info:
            api.chat.completions.create(model="m", messages=user("slow down"))
        assert info.value.response.headers["retry-after"] == "0.5"
        assert info.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.InternalServerError) as info:
            api.chat.completions.create(model="m", messages=user("anything"))
        assert info.value.status_code == 500
        assert [r.fault for r in server.requests] == [0, 1]


def test_hang_times_out_client_and_server_stops_promptly():
    server = FakeOpenAIServer(faults=[Fault(hang=30.0, every=1)]).start()
    try:

        async def call():
            async with async_client(server, timeout=0.3) as api:
                await api.chat.completions.create(model="m", messages=user("hang please"))

        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            asyncio.run(call())
        assert time.perf_counter() - started < 2.0
        [record] = server.requests
        assert record.hung and record.status == 200
    finally:
        started = time.perf_counter()
        server.stop()
        assert time.perf_counter() - started < 1.0
    assert not server.running


def test_malformed_body_raises_in_client():
    with FakeOpenAIServer(faults=[Fault(raw_body="{not json", every=1)]) as server:
        with pytest.raises((ValueError, openai.OpenAIError)):
            client(server).chat.completions.create(model="m", messages=user("hi"))
        assert server.count(status=200) == 1


def test_fault_every_and_attempts_are_deterministic_per_request():
    def run() -> list[tuple[str, int, int]]:
        faults = [Fault(status=503, every=2, attempts=1), Fault(status=500, rate=0.5, seed=7, attempts=2)]
        with FakeOpenAIServer(faults=faults) as server:
            api = client(server)
            outcomes = []
            for text in ["a", "b", "c", "d", "b", "b", "b", "e", "f", "g", "h"]:
                try:
                    api.chat.completions.create(model="m", messages=user(text))
                    outcomes.append(200)
                except openai.APIStatusError as exc:
                    outcomes.append(exc.status_code)
            records = server.requests
            assert [r.status for r in records] == outcomes
            return [(r.body["messages"][0]["content"], r.attempt, r.status) for r in records]

    first = run()
    assert first == run()  # same requests, same faults
    by_text = {}
    for text, attempt, status in first:
        by_text.setdefault(text, []).append((attempt, status))
    # every=2: the 2nd, 4th, ... distinct requests ("b", "d", "f", "h") fail on their first attempt only
    assert [by_text[t][0] for t in "abcdefgh"][1::2] == [(0, 503)] * 4
    assert [attempt for attempt, _ in by_text["b"]] == [0, 1, 2, 3]
    assert by_text["b"][-1] == (3, 200)  # after at most 1 + 2 failing attempts, a retry succeeds
    # rate=0.5 hits some but not all of the other keys, on their first two attempts
    rated = [by_text[text][0][1] for text in "aceg"]
    assert 500 in rated and 200 in rated


def test_fault_match_gives_malformed_grader_tables_forever(combos):
    combo = combos[0]
    prompts = PromptSet()
    garbage = "| Criteria | Points |\n|---|---|\n| garbage"
    fault = Fault(content=garbage, match="The text to grade", every=2, attempts=None)
    with FakeOpenAIServer(faults=[fault]) as server:
        api = client(server)
        generation = api.chat.completions.create(
            model="m", messages=user(prompts.round1(combo.skills, combo.topic))
        )
        assert extract_answer(generation.choices[0].message.content)
        answers = ["First text about it.", "Second text about it."]
        graded = []
        for answer in [*answers, answers[1], answers[1]]:
            prompt = prompts.grader(answer, combo.skills, combo.topic)
            out = api.chat.completions.create(model="m", messages=user(prompt)).choices[0].message.content
            graded.append(parse_grade(out, combo.skills, combo.topic).ok)
        assert graded == [True, False, False, False]
        assert [r.attempt for r in server.requests] == [0, 0, 0, 1, 2]


# ------------------------------------------------------------------------------------------------------
# Replies and responders
# ------------------------------------------------------------------------------------------------------


def test_scripted_replies_refusal_truncation_and_exhaustion():
    replies = ["one two three four five", Reply(refusal="I will not."), Reply(status=418, content="teapot")]
    with FakeOpenAIServer(ScriptedResponder(replies)) as server:
        api = client(server)
        cut = api.chat.completions.create(model="m", messages=user("a"), max_tokens=2)
        assert cut.choices[0].message.content == "one two" and cut.choices[0].finish_reason == "length"
        refused = api.chat.completions.create(model="m", messages=user("b")).choices[0]
        assert refused.message.content is None and refused.message.refusal == "I will not."
        assert refused.finish_reason == "content_filter"
        with pytest.raises(openai.APIStatusError) as info:
            api.chat.completions.create(model="m", messages=user("c"))
        assert info.value.status_code == 418 and "teapot" in info.value.message
        with pytest.raises(openai.InternalServerError, match="no reply left"):
            api.chat.completions.create(model="m", messages=user("d"))
    cycling = ScriptedResponder(["x", "y"], cycle=True)
    assert [cycling({}) for _ in range(5)] == ["x", "y", "x", "y", "x"]


def test_broken_responder_is_a_500_and_streaming_works():
    def responder(body):
        if "boom" in body["messages"][-1]["content"]:
            raise RuntimeError("kaput")
        return "streamed words here"

    with FakeOpenAIServer(responder) as server:
        api = client(server)
        with pytest.raises(openai.InternalServerError, match="kaput"):
            api.chat.completions.create(model="m", messages=user("boom"))
        stream = api.chat.completions.create(
            model="m", messages=user("go on"), stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "streamed words here"
        assert chunks[-1].usage.completion_tokens == 3


def test_skillmix_responder_generation_rounds(combos):
    prompts = PromptSet()
    with FakeOpenAIServer() as server:
        api = client(server)
        for combo in list(combos)[:5]:
            messages = prompts.conversation(combo.skills, combo.topic)
            reply1 = api.chat.completions.create(model="m", messages=messages).choices[0].message.content
            again = api.chat.completions.create(model="m", messages=messages).choices[0].message.content
            assert reply1 == again  # deterministic from the request
            answer1 = extract_answer(reply1)
            assert answer1 and combo.topic in answer1
            assert "Explanation:" in reply1
            messages = prompts.conversation(combo.skills, combo.topic, reply1)
            reply2 = api.chat.completions.create(model="m", messages=messages).choices[0].message.content
            answer2 = extract_answer(reply2)
            assert answer2 and combo.topic in answer2
            assert answer2 != answer1 and len(answer2) < len(answer1)
            assert count_sentences(answer2) <= max_sentences(len(combo.skills))
        other = api.chat.completions.create(model="m", messages=user("What time is it?"))
        assert other.choices[0].message.content and "Answer:" not in other.choices[0].message.content


def test_skillmix_responder_replies_by_messages_and_seed_only(combos):
    """Two clients that send one conversation with one seed get one reply (inspect_ai sends text parts,
    max_completion_tokens, its own fields); another seed is another sample."""
    responder = SkillMixResponder(accept_rate=0.5)
    prompt = PromptSet().round1(next(iter(combos)).skills, next(iter(combos)).topic)
    ours = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": 512, "seed": 3}
    theirs = {"model": "other", "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
              "max_completion_tokens": 512, "seed": 3, "stream_options": {"include_usage": True}}  # fmt: skip
    assert responder(ours) == responder(theirs)
    replies = {responder({**ours, "seed": seed}) for seed in range(8)}
    assert len(replies) > 1


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_skillmix_responder_grades_parse_into_k_plus_3_points(combos, fmt):
    combo = combos[1]
    prompts = PromptSet()
    with FakeOpenAIServer() as server:
        api = client(server)
        generation = api.chat.completions.create(
            model="m", messages=user(prompts.round1(combo.skills, combo.topic))
        )
        answer = extract_answer(generation.choices[0].message.content)
        judge = user(prompts.grader(answer, combo.skills, combo.topic, fmt=fmt))
        grades = []
        for run in range(3):  # three grader runs of one text, differing in seed, agree
            out = api.chat.completions.create(model="m", messages=judge, seed=run, temperature=0.7)
            grades.append(parse_grade(out.choices[0].message.content, combo.skills, combo.topic))
        assert all(g.ok and g.fmt == fmt for g in grades)
        assert len(grades[0].points) == len(combo.skills) + 3
        assert grades[0].reported_total == sum(grades[0].points)
        assert grades[0].points == grades[1].points == grades[2].points


def test_skillmix_responder_accept_rate(combos):
    prompts = PromptSet()
    combo = combos[2]
    answers = [f"Text number {i} about {combo.topic}, written to be graded." for i in range(100)]
    judge = [user(prompts.grader(a, combo.skills, combo.topic)) for a in answers]

    async def grade_all(server):
        async with async_client(server) as api:
            replies = await asyncio.gather(
                *(api.chat.completions.create(model="m", messages=m) for m in judge)
            )
        return [parse_grade(r.choices[0].message.content, combo.skills, combo.topic) for r in replies]

    with FakeOpenAIServer(SkillMixResponder(seed=0, accept_rate=0.7)) as server:
        grades = asyncio.run(grade_all(server))
    assert all(g.ok for g in grades)
    full = [all(g.points) for g in grades]
    assert 0.55 <= sum(full) / len(full) <= 0.85
    zeros = {g.points.count(0) for g in grades if not all(g.points)}
    assert zeros <= {1, 2}
    # another seed decides differently; accept_rate 0 and 1 are absolute
    reseeded = SkillMixResponder(seed=1)
    assert [all(reseeded.points(a, 6)) for a in answers] != full
    assert not any(all(SkillMixResponder(accept_rate=0.0).points(a, 6)) for a in answers)
    assert all(all(SkillMixResponder(accept_rate=1.0).points(a, 6)) for a in answers)


# ------------------------------------------------------------------------------------------------------
# Concurrency, accounting, subprocess mode
# ------------------------------------------------------------------------------------------------------


def test_latency_is_concurrent_and_attempts_are_exact():
    async def burst(server):
        async with async_client(server) as api:
            started = time.perf_counter()
            distinct = [api.chat.completions.create(model="m", messages=user(f"q{i}")) for i in range(32)]
            same = [api.chat.completions.create(model="m", messages=user("same")) for _ in range(8)]
            replies = await asyncio.gather(*distinct, *same)
            return replies, time.perf_counter() - started

    with FakeOpenAIServer(latency=0.2) as server:
        replies, elapsed = asyncio.run(burst(server))
        assert len(replies) == 40 and all(r.choices[0].message.content for r in replies)
        assert elapsed < 1.5, f"40 concurrent requests at 200 ms latency took {elapsed:.2f} s"
        assert server.count(status=200) == 40 and len(server.distinct_keys()) == 33
        same_key = request_key({"messages": user("same"), "model": "m"})
        assert sorted(r.attempt for r in server.requests if r.key == same_key) == list(range(8))


def test_parse_fault():
    assert parse_fault("429:every=3:retry_after=0.5") == Fault(status=429, every=3, retry_after=0.5)
    assert parse_fault("500:rate=0.2:attempts=2:seed=1") == Fault(status=500, rate=0.2, attempts=2, seed=1)
    assert parse_fault("hang:every=5") == Fault(hang=30.0, every=5)
    assert parse_fault("hang:seconds=2.5:attempts=none") == Fault(hang=2.5, attempts=None)
    garbage = parse_fault(
        "malformed:match=The text to grade:content=| Criteria | Points |\\n| garbage:every=2"
    )
    assert garbage == Fault(content="| Criteria | Points |\n| garbage", match="The text to grade", every=2)
    assert parse_fault("malformed:every=7").raw_body.startswith("{")
    assert parse_fault("refusal").refusal
    for bad in ["teapot", "429:often=2", "429:every=0", "500:rate=2", "hang:every=x"]:
        with pytest.raises(ValueError):
            parse_fault(bad)


def test_subprocess_mode_with_log(tmp_path):
    log = tmp_path / "requests.jsonl"
    command = [sys.executable, "-m", "skillmix.testing.fake_openai", "--port", "0", "--log", str(log)]
    command += ["--fault", "500:every=2:attempts=1", "--latency", "0.01"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("BASE_URL http://127.0.0.1:"), line + proc.stderr.read()
        base_url = line.split()[1]
        api = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
        statuses = []
        for text in ["a", "b", "b", "c"]:
            try:
                api.chat.completions.create(model="m", messages=user(text))
                statuses.append(200)
            except openai.InternalServerError:
                statuses.append(500)
        assert statuses == [200, 500, 200, 200]
        lines = [json.loads(x) for x in log.read_text().splitlines()]  # flushed per request
        assert [(x["attempt"], x["status"]) for x in lines] == [(0, 200), (0, 500), (1, 200), (0, 200)]
        assert lines[1]["key"] == lines[2]["key"] == request_key({"messages": user("b"), "model": "m"})
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["requests"] == 4 and summary["distinct_keys"] == 3
    assert summary["by_status"] == {"200": 3, "500": 1} and summary["retries"] == 1
