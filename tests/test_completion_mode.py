"""Base models as teacher and judge: the conversation as plain text through /v1/completions, with the
reply's first words given, so that the continuation lands in the format the parsers read."""

from __future__ import annotations

import asyncio
import json

from cli_runs import dataset_cmd, run_here

from skillmix.catalog import load_catalog
from skillmix.llm.cache import RequestCache
from skillmix.llm.client import ClientConfig, Endpoint, LLMClient
from skillmix.llm.prices import PriceTable
from skillmix.prompts import PromptSet
from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer
from skillmix.testing.fake_openai.completions import COMPLETIONS_PATH, as_chat, continuation

SKILLS = load_catalog("builtin").skills[:2]


def test_the_plain_prompt_reads_back_as_the_conversation_and_ends_with_the_prefix():
    prompts = PromptSet()
    conversation = prompts.conversation(SKILLS, "Knots", "Answer: A knot.\nExplanation: one.")
    text, prefix = prompts.plain(conversation, "generation")
    assert prefix == "Answer:" and text.endswith("### Response\nAnswer:")
    messages = as_chat({"prompt": text})["messages"]
    # the worked example (two rounds), then the conversation itself
    assert [m["role"] for m in messages] == ["user", "assistant"] * 3 + ["user"]
    assert messages[4]["content"].startswith(conversation[0]["content"][:60])
    assert messages[5]["content"] == "Answer: A knot.\nExplanation: one."
    assert "<the text>" not in text and "Reply in exactly this form" not in text  # a base model copies them
    grader = prompts.grader("A knot.", SKILLS, "Knots")
    plain, table = prompts.plain([{"role": "user", "content": grader}], "grader_table")
    first = f"Correctly illustrates {SKILLS[0].name}"
    assert table == f"| Criteria | Points Earned |\n|---|---|\n| {first} |" and plain.endswith(table)
    example = plain.split("### Instruction")[1]  # the worked grade has as many skill rows as asked, plus one
    assert example.count("| Correctly illustrates") == len(SKILLS) + 1


def test_a_continuation_does_not_repeat_the_prefix_and_stops():
    assert continuation("...\nAnswer:", "Answer: Rope.\nExplanation: x\n### Instruction", "\n###") == (
        " Rope.\nExplanation: x", True)  # fmt: skip
    assert continuation("| a |", "| a | 1 |", None) == (" 1 |", False)


def test_the_client_sends_plain_text_and_caches_it_apart_from_chat(tmp_path):
    prompts = PromptSet()
    messages = prompts.conversation(SKILLS, "Knots")
    with FakeOpenAIServer() as server:

        def client(mode: str) -> LLMClient:
            endpoint = Endpoint("fake-teacher", server.base_url, mode=mode)
            return LLMClient(endpoint, ClientConfig(max_retries=0), RequestCache(tmp_path / "cache.sqlite"),
                             PriceTable.load(None))  # fmt: skip

        base = client("completion")
        done = asyncio.run(base.complete(messages, 0.0, 100, 0, plain=prompts.plain(messages, "generation")))
        again = asyncio.run(base.complete(messages, 0.0, 100, 0, plain=prompts.plain(messages, "generation")))
        chat = asyncio.run(client("chat").complete(messages, 0.0, 100, 0))
        assert server.count(path=COMPLETIONS_PATH) == 1 and server.count(path=CHAT_PATH) == 1
    assert done.ok and done.text.startswith("Answer:") and "\nExplanation:" in done.text
    assert "###" not in done.text and again.cached and not chat.cached


def test_a_dataset_of_base_models_is_graded(tmp_path):
    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        cmd = dataset_cmd(server, out, "--k", "2", "--n", "4", "--teacher-mode", "completion",
                          "--judge-mode", "completion")  # fmt: skip
        result = run_here(cmd)
        sent = server.count(path=COMPLETIONS_PATH)
        assert result.returncode == 0, result.stderr[-3000:]
        assert server.count(path=CHAT_PATH) == 0 and sent == 4 * 5
        assert "(completion mode: a base model)" in result.stderr
        assert run_here(cmd).returncode == 0 and server.count(path=COMPLETIONS_PATH) == sent  # all cached
    counts = json.loads((out / "manifest.json").read_text())["counts"]["per_k"]["k2"]
    assert counts["kept"] + counts["rejected"] == 4 and counts["failed"] == 0  # every row reached the judge
