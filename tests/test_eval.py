"""`skillmix eval` against an OpenAI-compatible student and judge on loopback, with scripted grades whose
metrics are computed by hand here: ties, unparseable runs, a failed generation, the length override."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_runs import CLI, HUB_TOKEN, hub_changes, run_here

from skillmix.catalog import load_catalog
from skillmix.release.evalsets import draw_eval_set
from skillmix.testing.fake_openai import CHAT_PATH, FakeOpenAIServer, Fault, Reply
from skillmix.testing.fake_openai.wire import last_user_message

MARK = re.compile(r"The (.+?) report, take (\d)\.")
FULL, MISS_1ST, MISS_BOTH, LONG = [1, 1, 1, 1, 1], [0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [1, 1, 1, 1, 0]
BAD = "I would rather not fill in a table today."  # an unparseable grade
# the warnings a process does not print by default: pytest records the others, which a process would print
PROCESS_HIDES = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def combos() -> list:
    catalog = load_catalog("builtin")
    return draw_eval_set(catalog, catalog.split(0), 2, "held-out", 3, seed=0)


def script() -> dict[tuple[str, int], list | None]:
    """(topic, generation) -> the judge's three runs (None: the student fails that generation).

    A: g0 full marks in every run; g1 the student refuses (earns nothing). Best: 1 / 1 / 1.
    B: g0 two of three runs miss skill 1: skill fraction 1/2. g1 one run unparseable, the two left tie on
       both skills (a tie earns 0): skill fraction 0. Best: 0 / 0 / 0.5.
    C: g0 all three runs unparseable (no vote: not graded). g1 the judge denies the length point, but the
       answer is one sentence, and the sentence counter decides it: full marks. Best: 1 / 1 / 1.
    """
    a, b, c = (combo.topic for combo in combos())
    return {
        (a, 0): [FULL, FULL, FULL], (a, 1): None,
        (b, 0): [FULL, MISS_1ST, MISS_1ST], (b, 1): [FULL, MISS_BOTH, BAD],
        (c, 0): [BAD, BAD, BAD], (c, 1): [LONG, LONG, LONG],
    }  # fmt: skip


class Scripted:
    """Student and judge: the student writes one marked sentence per generation; the judge grades by the
    mark and its run (its request seed)."""

    def __init__(self) -> None:
        self.script = script()

    def __call__(self, body: dict) -> Reply | str:
        prompt = last_user_message(body)
        seed = int(body.get("seed") or 0)
        if "The text to grade" in prompt:
            topic, g = MARK.search(prompt).groups()
            run = self.script[(topic, int(g))][seed]
            if run == BAD:
                return BAD
            rows = "\n".join(f"| item {i} | {p} |" for i, p in enumerate(run))
            return f"| Criteria | Points Earned |\n|---|---|\n{rows}\n| Total Points Earned | {sum(run)} |"
        first = body["messages"][0]["content"]
        topic = next(t for (t, _g) in self.script if f'"{t}"' in first)
        if self.script[(topic, seed)] is None:
            return Reply(refusal="I cannot help with that.", finish_reason="content_filter")
        return f"Answer: The {topic} report, take {seed}.\nExplanation: it is short."


def eval_cmd(server, out: Path, *extra: str) -> list[str]:
    return [
        *CLI, "eval", "--out", str(out),
        "--student-model", "fake-teacher", "--student-base-url", server.base_url,
        "--judge-model", "fake-teacher", "--judge-base-url", server.base_url,
        "--k", "2", "--setting", "held-out", "--n", "3", "--generations", "2", "--max-retries", "0",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "out"
    with FakeOpenAIServer(responder=Scripted()) as server:
        first = run_here(eval_cmd(server, out))
        sent = server.count(path=CHAT_PATH)
        graded = [r.body for r in server.requests if "The text to grade" in last_user_message(r.body)]
        again = run_here(eval_cmd(server, out))
        resent = server.count(path=CHAT_PATH) - sent
    evaluated.graded = graded
    return out, first, again, sent, resent


def test_metrics_are_the_hand_computed_ones(evaluated):
    out, first, _again, _sent, _resent = evaluated
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    [result] = results["results"]
    assert (result["setting"], result["k"], result["n"], result["excluded"]) == ("held-out", 2, 3, 0)
    assert result["full_marks"]["mean"] == pytest.approx(2 / 3)
    assert result["full_marks"]["stderr"] == pytest.approx(1 / 3)  # std([1, 0, 1]) / sqrt(3)
    assert result["all_skills"]["mean"] == pytest.approx(2 / 3)
    assert result["skill_fraction"]["mean"] == pytest.approx(2.5 / 3)
    assert result["skill_fraction"]["stderr"] == pytest.approx((1 / 12) ** 0.5 / 3**0.5)
    assert result["failed_generations"] == 1 and result["unparseable_grades"] == 4
    assert result["generations"] == 6 and result["judge_errors"] == 0
    low, high = result["full_marks"]["ci_low"], result["full_marks"]["ci_high"]
    assert 0 <= low <= 2 / 3 <= high <= 1
    assert results["judge"]["model"] == "fake-teacher" and results["protocol"]["name_penalty"] is True
    assert set(results["protocol"]["prompt_hashes"]) >= {
        "generation_round1",
        "generation_round2",
        "grader_table",
    }


def test_the_judge_samples_its_runs_and_the_results_say_how(evaluated):
    """The original grader samples each run at 0.7: three runs are three samples (distinct seeds), and the
    judge's temperature, mode and runs are part of the recorded protocol."""
    out = evaluated[0]
    graded = evaluated_bodies()
    assert len(graded) == 15 and {b["temperature"] for b in graded} == {0.7}
    by_text: dict[str, list[int]] = {}
    for body in graded:
        by_text.setdefault(last_user_message(body), []).append(body["seed"])
    assert len(by_text) == 5 and all(sorted(seeds) == [0, 1, 2] for seeds in by_text.values())
    protocol = json.loads((out / "results.json").read_text())["protocol"]
    assert protocol["judge_sampling"]["temperature"] == 0.7
    assert protocol["judge"]["temperature"] == 0.7 and protocol["judge"]["mode"] == "auto"
    assert protocol["judge"]["grader_runs"] == 3


def evaluated_bodies() -> list[dict]:
    return evaluated.graded  # type: ignore[attr-defined]


def test_samples_hold_everything_needed_to_rescore(evaluated):
    out = evaluated[0]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and len({s["combination"] for s in samples}) == 3
    failed = [s for s in samples if s["round1_status"] != "ok"]
    assert len(failed) == 1 and failed[0]["generation"] == 1 and failed[0]["round1_status"] == "refused"
    assert not any(failed[0]["grader_outputs"] or [])  # never sent to the judge
    graded = [s for s in samples if s["round1_status"] == "ok"]
    for s in graded:
        assert [m["role"] for m in s["conversation"]] == ["user", "assistant", "user", "assistant"]
        assert s["answer"] == MARK.search(s["conversation"][-1]["content"]).group(0)
        assert len(s["grader_outputs"]) == 3 and len(s["grader_status"]) == 3
        assert s["student"] and s["judge"]


def test_a_second_identical_run_sends_no_request(evaluated):
    _out, _first, again, sent, resent = evaluated
    assert again.returncode == 0, again.stderr[-3000:]
    assert sent == 5 * 2 + 1 + 5 * 3 and resent == 0  # 5 generations x 2 rounds, 1 failure, 5 graded x 3
    assert "full_marks 0.67" in again.stdout


def test_rescore_needs_no_request_and_can_switch_the_checks_off(evaluated, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(evaluated[0], out)
    before = json.loads((out / "results.json").read_text())
    result = run_here([*CLI, "eval", "rescore", str(out), "--no-length-override"])
    assert result.returncode == 0, result.stderr[-3000:]
    after = json.loads((out / "results.json").read_text())
    assert after["protocol"]["length_override"] is False and after["run_id"] == before["run_id"]
    # without the sentence counter C's best generation keeps the judge's 0 for length: 1 of 3 full marks
    assert after["results"][0]["full_marks"]["mean"] == pytest.approx(1 / 3)
    rescored = run_here([*CLI, "eval", "rescore", str(out), "--length-override"])
    assert rescored.returncode == 0
    assert json.loads((out / "results.json").read_text())["results"] == before["results"]
    assert (out / "results.md").read_text().count("±") >= 3 and list((out / "plots").glob("*.png"))


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--setting", "sideways"], "unknown setting 'sideways'"),
        (["--k", "60"], "k=60 exceeds the"),
        (["--eval-set", "/nonexistent/release"], "--eval-set /nonexistent/release"),
        (
            ["--judge-base-url", "http://127.0.0.1:9/v1"],
            "judge base URL http://127.0.0.1:9/v1 does not answer",
        ),
        (["--student-model", "/nonexistent/ckpt"], "/nonexistent/ckpt"),
        (["--max-usd", "1"], "the student model 'fake-teacher', which is not known"),  # the cap needs prices
    ],
)
def test_bad_input_is_one_line_before_any_request_or_file(tmp_path, recwarn, extra, says):
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=Scripted()) as server:
        cmd = eval_cmd(server, out, *extra)
        if "--student-model" in extra:  # a local student: no base URL
            at = cmd.index("--student-base-url")
            del cmd[at : at + 2]
        result = run_here(cmd)
        assert server.count(path=CHAT_PATH) == 0
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skillmix: error: ") and says in lines[0], lines
    assert not [str(w.message) for w in recwarn if not issubclass(w.category, PROCESS_HIDES)]
    assert not out.exists()


def test_an_eval_without_a_judge_says_how_to_name_one(tmp_path):
    with FakeOpenAIServer() as server:
        cmd = eval_cmd(server, tmp_path / "out")
        at = cmd.index("--judge-model")
        del cmd[at : at + 4]
        result = run_here(cmd)
    assert (
        result.returncode == 2 and "--judge-model" in result.stderr and "never grades itself" in result.stderr
    )
    assert server.count() == 0 and not (tmp_path / "out").exists()


def test_compare_puts_two_runs_side_by_side(evaluated, tmp_path):
    import shutil

    base, tuned = tmp_path / "base", tmp_path / "tuned"
    shutil.copytree(evaluated[0], base)
    shutil.copytree(evaluated[0], tuned)
    results = json.loads((tuned / "results.json").read_text())
    results["student"]["model"] = "tuned-student"
    (tuned / "results.json").write_text(json.dumps(results))
    cmp = tmp_path / "cmp"
    result = run_here([*CLI, "eval", "compare", str(base), str(tuned), "--out", str(cmp)])
    assert result.returncode == 0, result.stderr[-3000:]
    table = (cmp / "comparison.md").read_text()
    assert "fake-teacher" in table and "tuned-student" in table
    assert "+0.00 [+0.00, +0.00] | 1.000 | 3 |" in table  # the paired difference: same run, same answers
    assert sorted(p.name for p in (cmp / "plots").glob("*.png")) == [
        "all_skills.png", "full_marks.png", "skill_fraction.png",
    ]  # fmt: skip


def test_push_results_writes_the_model_index_and_a_tagged_run(hub, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, ModelCard

    home = tmp_path / "hf-home"
    hub.configure_clients(monkeypatch, home)  # huggingface_hub and datasets read their endpoint at import
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    HfApi().create_repo("org/student")
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=Scripted()) as server:
        cmd = eval_cmd(server, out, "--push-results", "org/student", "--results-repo", "org/evals")
        result = run_here(cmd, hub_changes(hub, home))
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    entries = ModelCard.load("org/student").data.eval_results
    assert len(entries) == 3  # one k, one setting, three metrics
    by_metric = {e.metric_type: e for e in entries}
    for metric in ("full_marks", "all_skills", "skill_fraction"):
        assert by_metric[metric].metric_value == pytest.approx(results["results"][0][metric]["mean"])
        assert by_metric[metric].dataset_config == "held-out-k2"
    run_id = results["run_id"]
    files = HfApi().list_repo_files("org/evals", repo_type="dataset")
    assert f"runs/{run_id}/results.json" in files and f"runs/{run_id}/samples.jsonl" in files
    assert not [f for f in files if ".skillmix" in f]
    tags = [t.name for t in HfApi().list_repo_refs("org/evals", repo_type="dataset").tags]
    assert run_id in tags


def test_the_judge_mode_reaches_the_judge(tmp_path):
    """``--judge-mode completion``: every grading request goes to /v1/completions, none to the chat
    endpoint (the evaluation's own copy of the role resolution once dropped the judge's mode)."""
    from skillmix.testing.fake_openai.completions import COMPLETIONS_PATH

    with FakeOpenAIServer(responder=Scripted()) as server:
        done = run_here(eval_cmd(server, tmp_path / "out", "--judge-mode", "completion"))
        records = server.requests
    assert done.returncode == 0, done.stderr[-3000:]
    chat = [r for r in records if r.path == CHAT_PATH]
    plain = [r for r in records if r.path == COMPLETIONS_PATH]
    assert len(plain) == 5 * 3  # 5 generations graded, 3 runs each
    assert all("The text to grade" in r.body["prompt"] for r in plain)
    assert len(chat) == 5 * 2 + 1 and not any("The text to grade" in last_user_message(r.body) for r in chat)


def test_infrastructure_errors_are_left_out_listed_and_retried(tmp_path):
    """A student server that answers 500 (past the retries) for one combination: its generations are
    errored, not zeros: out of the metrics, listed, exit 1. The same command again, the server healthy,
    sends only their requests, and the metrics are those of the whole script (computed by hand above)."""
    _a, b, _c = (combo.topic for combo in combos())
    out = tmp_path / "out"
    with FakeOpenAIServer(responder=Scripted(), faults=[Fault(status=500, match=f'"{b}"', every=1,
                                                              attempts=None)]) as server:  # fmt: skip
        first = run_here(eval_cmd(server, out))
        results = json.loads((out / "results.json").read_text())
        server.faults = ()  # the server is healthy again
        seen = len(server.requests)
        again = run_here(eval_cmd(server, out))
        resent = [r for r in server.requests[seen:] if r.path == CHAT_PATH]
    assert first.returncode == 1, first.stderr[-3000:]
    assert "2 generations errored" in first.stderr and "Run the same command again" in first.stderr
    [r] = results["results"]
    assert (r["n"], r["errored_generations"], r["failed_generations"]) == (2, 2, 1)
    assert r["full_marks"]["mean"] == pytest.approx(1.0)  # a and c: full marks; b left out, not zero
    assert sorted(results["errored"]) == [f"held-out:{combos()[1].id}:g0", f"held-out:{combos()[1].id}:g1"]
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(resent) == 2 * 2 + 2 * 3 and all(b in json.dumps(r.body, ensure_ascii=False) for r in resent)
    [r] = json.loads((out / "results.json").read_text())["results"]
    assert r["errored_generations"] == 0 and r["n"] == 3
    assert r["full_marks"]["mean"] == pytest.approx(2 / 3) and r["skill_fraction"]["mean"] == pytest.approx(
        2.5 / 3
    )
