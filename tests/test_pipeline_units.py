"""Pipeline pieces without running a pipeline: config precedence, envelopes, the deciding step."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from skillmix.llm.client import Completion
from skillmix.pipelines.config import ConfigError, build_config, parse_k, preset_names
from skillmix.pipelines.dataset import stage_concurrency
from skillmix.pipelines.progress import ProgressLog
from skillmix.pipelines.steps import decide_row
from skillmix.pipelines.tasks import ENVELOPE, SkillMixLLM, open_envelope, skip_input
from skillmix.rules import ScoringRules

RULES = ScoringRules(length_override=True, name_penalty=True, unparseable="zero")


def test_defaults_then_preset_then_flags(tmp_path):
    assert {"smoke", "paper"} <= set(preset_names())
    smoke = build_config()
    assert smoke.k == [3] and smoke.n == 4 and smoke.teacher.model is None
    paper = build_config("paper", {"k": "1,2,3"})
    assert [paper.count_for(k) for k in (1, 2, 3)] == [None, 10000, 10000]
    assert paper.teacher.model == "gpt-4o" and paper.judge.temperature == 0.7
    flagged = build_config("paper", {"k": "2", "n": 7, "teacher": {"model": "my-model", "base_url": None}})
    assert flagged.count_for(2) == 7 and flagged.teacher.model == "my-model"
    assert flagged.teacher.max_tokens == 512  # untouched preset value survives a partial override
    custom = tmp_path / "mine.yaml"
    custom.write_text("n: 9\njudge:\n  model: judge-x\n")
    assert build_config(str(custom)).judge.model == "judge-x"


@pytest.mark.parametrize(
    ("preset", "overrides", "message"),
    [
        ("nope", {}, "unknown preset 'nope'"),
        ("smoke", {"k": "0"}, "^flags: k: K must be >= 1, got 0$"),
        ("smoke", {"k": "2,2"}, r"^flags: k: K lists a value twice: \[2, 2\]$"),
        ("smoke", {"n": 0}, "^flags: n: must be >= 1, got 0$"),
        ("smoke", {"client": {"max_usd": -1.0}}, r"^flags: client.max_usd: must be > 0.0, got -1.0$"),
        ("smoke", {"grader_format": "xml"}, "^flags: grader_format: must be 'table' or 'json', got 'xml'$"),
        ("smoke", {"colour": "blue"}, "^flags: colour: unknown key$"),
    ],
)
def test_config_errors(preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(preset, overrides)


def test_parse_k_and_fingerprint():
    assert parse_k("1, 2,3") == [1, 2, 3] and parse_k(3) == [3]
    a = build_config("smoke", {"n": 4})
    b = build_config("smoke", {"n": 400, "client": {"concurrency": 2, "max_usd": 5.0}})
    c = build_config("smoke", {"seed": 1})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()  # size and speed do not change the run


def test_stage_concurrency_never_exceeds_the_budget():
    config = build_config("smoke", {"client": {"concurrency": 30}, "batch_size": 100})
    assert stage_concurrency(config, 50) == {"round1": 30, "round2": 30, "grade": 30}  # stages in sequence
    split = stage_concurrency(config, 500)  # overlapping batches: split 1:1:3
    assert split == {"round1": 6, "round2": 6, "grade": 18} and sum(split.values()) <= 30


def test_progress_log_counts_per_run_and_stage_across_processes(tmp_path):
    log = ProgressLog(tmp_path / "progress")
    log.record("r1", "round1", ["ok", "ok", "api_error"])
    log.record("r1", "decide", ["kept", "rejected"])
    log.record("r2", "round1", ["ok"])
    code = "import sys; from skillmix.pipelines.progress import ProgressLog; "
    code += "ProgressLog(sys.argv[1]).record('r1', 'round1', ['ok', 'refused'])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "progress")], check=True)
    assert log.counts("r1") == {
        "round1": {"ok": 3, "api_error": 1, "refused": 1},
        "decide": {"kept": 1, "rejected": 1},
    }
    assert log.counts("r2") == {"round1": {"ok": 1}} and log.counts("r3") == {}


def test_envelopes():
    c = Completion("hello", "ok", input_tokens=3, output_tokens=1)
    assert open_envelope(json.dumps({ENVELOPE: c.to_dict()})) == c
    assert open_envelope(None).status == "api_error" and "no output" in open_envelope(None).error
    assert open_envelope("plain text from another LLM").text == "plain text from another LLM"
    assert open_envelope('{"criteria": []}').text == '{"criteria": []}'  # a JSON grade is not an envelope


def test_agenerate_never_raises_and_skips():
    llm = SkillMixLLM(model="m", base_url="http://127.0.0.1:9/v1")

    class Exploding:
        async def complete(self, *args, **kwargs):
            raise RuntimeError("boom")

    llm._client = Exploding()
    out = asyncio.run(llm.agenerate([{"role": "user", "content": "x"}], num_generations=2))
    got = [open_envelope(g) for g in out["generations"]]
    assert [g.status for g in got] == ["api_error", "api_error"] and "boom" in got[0].error
    skipped = asyncio.run(llm.agenerate(skip_input("round 1 api_error: HTTP 400"), num_generations=3))
    assert [open_envelope(g).status for g in skipped["generations"]] == ["skipped"] * 3
    assert open_envelope(skipped["generations"][0]).error == "round 1 api_error: HTTP 400"


def row(**changes):
    base = {
        "skills": ["metaphor", "red herring"],
        "topic": "Sewing",
        "answer": "The hem held like a promise.",
        "round1_status": "ok",
        "round2_status": "ok",
        "grader_points": [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], None],
        "grader_status": ["ok", "ok", "unparseable"],
        "grader_errors": [None, None, "missing rubric rows: Text makes sense"],
    }
    return {**base, **changes}


def test_decide_votes_over_parsed_runs():
    decided = decide_row(row(), RULES)
    assert decided["outcome"] == "kept" and decided["points"] == [1] * 5 and decided["full_marks"] == 1.0


def test_decide_rejects_with_failed_points():
    named = decide_row(row(answer="A metaphor, stitched quickly."), RULES)  # names a skill
    assert named["outcome"] == "rejected" and named["failed_points"] == ["Correctly illustrates metaphor"]
    long = decide_row(row(answer="One sentence. Two sentences."), RULES)  # k=2 allows one sentence
    assert long["outcome"] == "rejected" and long["failed_points"] == ["At most one sentence"]
    lenient = ScoringRules(length_override=True, name_penalty=False, unparseable="zero")
    assert decide_row(row(answer="A metaphor."), lenient)["outcome"] == "kept"


def test_decide_failures_carry_reasons():
    gen = decide_row(row(round1_status="api_error", round1_error="HTTP 400: bad", answer=None), RULES)
    assert (
        gen["outcome"] == "failed"
        and gen["status"] == "api_error"
        and gen["failure_reason"] == "round1: HTTP 400: bad"
    )
    unparsed = decide_row(row(grader_status=["unparseable"] * 3, grader_points=[None] * 3,
                              grader_errors=["no rubric table, JSON or point lines found"] * 3),
                          RULES)  # fmt: skip
    assert unparsed["outcome"] == "failed" and unparsed["status"] == "unparseable"
    assert "no rubric table" in unparsed["failure_reason"]
    assert unparsed["points"] is None  # never zeros


@pytest.mark.parametrize(
    ("judge", "env", "expected"),
    [
        ({}, {}, ("t", "http://teacher/v1")),  # unnamed: the teacher's model on the teacher's server
        ({}, {"OPENAI_BASE_URL": "http://env/v1"}, ("t", "http://teacher/v1")),
        ({"model": "j"}, {}, ("j", None)),  # a model of its own: OpenAI unless told otherwise
        ({"model": "j"}, {"OPENAI_BASE_URL": "http://env/v1"}, ("j", "http://env/v1")),
        ({"model": "j", "base_url": "http://judge/v1"}, {}, ("j", "http://judge/v1")),
        ({"base_url": "http://judge/v1"}, {}, ("t", "http://judge/v1")),  # the teacher's model, elsewhere
    ],
)
def test_the_judge_follows_the_teacher_unless_named(judge, env, expected, monkeypatch):
    from skillmix.pipelines.dataset import resolve_models

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    teacher = {"model": "t", "base_url": "http://teacher/v1"}
    config = build_config("smoke", {"teacher": teacher, "judge": judge})
    teacher, resolved = resolve_models(config)
    assert (teacher.model, teacher.base_url) == ("t", "http://teacher/v1")
    assert (resolved.model, resolved.base_url) == expected


def test_distilabels_polls_are_cut_to_50_ms(monkeypatch):
    """distilabel sleeps 2.5 s between two looks at its loading steps: the run sees 50 ms instead."""
    import time

    import distilabel.pipeline.base as base

    from skillmix.pipelines.beneath import POLL_SECONDS, _poll_faster

    slept = []
    monkeypatch.setattr(base, "time", time)  # distilabel's own module back, whatever ran before
    monkeypatch.setattr(time, "sleep", slept.append)
    _poll_faster()
    base.time.sleep(2.5)
    base.time.sleep(0.01)
    assert slept == [POLL_SECONDS, 0.01] and base.time.monotonic is time.monotonic


def test_the_embedded_judge_samples_at_its_smoke_temperature_unless_told_otherwise():
    from skillmix.pipelines.config import SAMPLING_TEMPERATURE, DatasetConfig
    from skillmix.pipelines.run import EMBEDDED_JUDGE_TEMPERATURE, embedded_judge
    from skillmix.pipelines.summary import summary_text

    default = DatasetConfig()
    smoke = embedded_judge(default)
    assert default.judge.temperature == SAMPLING_TEMPERATURE == 0.7  # every other judge: the protocol's
    assert smoke.judge.temperature == EMBEDDED_JUDGE_TEMPERATURE == 0.3 and smoke.teacher == default.teacher
    assert smoke.fingerprint() != default.fingerprint()  # a folder records which it was
    told = DatasetConfig(judge={"temperature": 0.5})
    assert embedded_judge(told).judge.temperature == 0.5
    manifest = {"counts": {"per_k": {}, "failures_by_reason": {}}, "configs": {}, "embedded": True,
                "judge": smoke.judge_protocol(), "usage": {}, "cost_usd": 0.0, "wall_seconds": 1.0,
                "config": smoke.to_dict()}  # fmt: skip
    text = summary_text(manifest, "out")
    assert "Its grader runs sampled at temperature 0.3 (a smoke-only setting" in text
