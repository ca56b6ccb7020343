"""The Argilla review loop, for real: push a stratified sample of a dataset folder built by the pipeline,
annotate it through the Argilla SDK as two annotators, pull, check every figure by hand, load and publish
the reviewed folder; bad input is one line, exit code 2, nothing written.

The folder is built by ``skillmix dataset`` against the fake OpenAI server (k = 2, 3; 6 rows each; about
half of them kept); the Argilla server is the session's (tests/argilla_fixtures.py). Scripted answers:
``alice`` answers every record as the judge did, except that she fails "makes sense" on one kept record
(R1) and gives full marks to one rejected record (R2), both single-annotator records; ``bob`` answers the
two-annotator records as the judge did, except that he fails "on topic" on one kept record (R3).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import cli_env, dataset_cmd, run_cli

from skillmix.cli import main
from skillmix.review.agreement import bootstrap_intervals
from skillmix.review.sample import allocate, failed_kinds, strata_counts, stratified_sample, two_annotator_ids
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

pytest_plugins = ["argilla_fixtures"]
pytestmark = [
    pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated"),
    pytest.mark.filterwarnings("ignore:`user_id` not provided"),
    pytest.mark.filterwarnings("ignore:Dataset with name"),
]

DATASET, WORKSPACE, N, SHARE = "review-test", "review-test", 8, "0.5"
HUB_TOKEN, REPO = "hf_skillmixReviewToken0123456789abc", "skillmix-tester/reviewed"


# ---- without a server -----------------------------------------------------------------------------------


def test_allocation_by_hand():
    sizes = {(2, "kept", "none"): 5, (2, "rejected", "skill"): 1, (3, "kept", "none"): 2,
             (3, "rejected", "skill"): 3, (3, "rejected", "topic"): 1}  # fmt: skip
    # one each (5), then 3 more in proportion to what is left (4, 0, 1, 2, 0 of 7): quotas 1.71, 0.43,
    # 0.86 -> floors 1, 0, 0 -> the two largest remainders (0.86, 0.71) get one more
    assert allocate(sizes, 8) == {(2, "kept", "none"): 3, (2, "rejected", "skill"): 1, (3, "kept", "none"): 1,
                                  (3, "rejected", "skill"): 2, (3, "rejected", "topic"): 1}  # fmt: skip
    assert allocate(sizes, 2) == {(2, "kept", "none"): 1, (2, "rejected", "skill"): 0, (3, "kept", "none"): 0,
                                  (3, "rejected", "skill"): 1, (3, "rejected", "topic"): 0}  # fmt: skip
    assert allocate(sizes, 50) == sizes and sum(allocate(sizes, 11).values()) == 11


def test_strata_and_the_two_annotator_share():
    assert failed_kinds([1, 1, 1, 1, 1], 2) == "none"
    assert failed_kinds([0, 1, 0, 0, 1, 0], 3) == "skill+topic+length"
    rows = [{"id": f"r{i}", "k": 2, "outcome": "kept", "points": [1] * 5} for i in range(6)]
    rows += [{"id": "x", "k": 2, "outcome": "failed", "points": None}]
    rows += [{"id": "y", "k": 3, "outcome": "rejected", "points": [1, 1, 1, 0, 1, 1]}]
    sample = stratified_sample(rows, 3, seed=1)
    assert len(sample) == 3 and "y" in {r["id"] for r in sample} and "x" not in {r["id"] for r in sample}
    assert sample == stratified_sample(rows, 3, seed=1) and strata_counts(sample)["3/rejected/topic"] == 1
    assert len(two_annotator_ids([f"r{i}" for i in range(8)], 0.2, seed=0)) == 2  # 1.6 -> 2
    assert len(two_annotator_ids(["a", "b", "c"], 0.5)) == 2 and two_annotator_ids(["a"], 0.0) == set()
    with pytest.raises(ValueError, match="between 0 and 1"):
        two_annotator_ids(["a"], 1.5)


def test_human_decisions_vote_and_apply_the_text_checks():
    from skillmix.review.decide import Annotation, decide

    row = {"k": 2, "skills": ["metaphor", "irony"], "topic": "Sewing", "answer": "A short text. Another one.",
           "points": [1, 1, 1, 1, 0], "full_marks": 0.0, "outcome": "rejected"}  # fmt: skip
    config = {"length_override": True, "name_penalty": True}
    yes = {q: "yes" for q in ("skill_1", "skill_2", "on_topic", "makes_sense", "within_length")}
    alice, bob = Annotation("alice", dict(yes)), Annotation("bob", {**yes, "skill_2": "no", "skill_3": "yes"})
    both = decide(row, [bob, alice], config)
    assert [a.user for a in both.annotations] == ["alice", "bob"]
    assert both.human.tolist() == [1, 0, 1, 1, 1]  # a tie earns 0; skill_3 does not apply to k = 2
    assert both.decided.tolist() == [1, 0, 1, 1, 0]  # two sentences: the counter fails the length point
    assert both.full_marks == 0.0
    named = decide({**row, "answer": "It reads like a metaphor."}, [alice], config)
    assert named.decided.tolist() == [0, 1, 1, 1, 1] and named.full_marks == 0.0  # the name rule
    assert decide({**row, "answer": "One sentence."}, [alice], config).full_marks == 1.0
    gap = decide(row, [Annotation("carol", {**yes, "skill_2": ""})], config)
    assert gap.decided is None and gap.full_marks is None  # an item nobody answered: no decision


def test_review_commands_route_and_need_an_action(capsys):
    from skillmix.cli import route

    assert (
        route(["eval", "rescore", "d"]) == ["eval-rescore", "d"] and route(["eval", "--k", "3"])[0] == "eval"
    )
    assert route(["review", "push", "--n", "3"]) == ["review-push", "--n", "3"]
    assert route(["review", "--help"]) == ["review", "--help"]
    with pytest.raises(SystemExit) as exit_info:
        main(["review", "publish"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


# ---- the loop against the server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("review") / "data"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=3, accept_rate=0.5)) as server:
        result = run_cli(dataset_cmd(server, out, "--k", "2,3", "--n", "6"))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def rows_of(folder: Path) -> dict[str, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        row["id"]: {**row, "config": name}
        for name, info in manifest["configs"].items()
        for row in pq.read_table(folder / info["path"]).to_pylist()
    }


def argilla_env(server, **changes) -> dict[str, str]:
    return {**cli_env(), "ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key, **changes}


def skillmix(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skillmix.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip


def push_args(folder, dataset=DATASET, *extra):
    return ["review", "push", "--data", str(folder), "--dataset", dataset, "--workspace", WORKSPACE, *extra]


@pytest.fixture(scope="module")
def pushed(folder, argilla_server, argilla_sdk):
    """The sample pushed by the real command line: its output, the owner's client and the dataset."""
    result = skillmix(*push_args(folder, DATASET, "--n", str(N), "--two-annotators", SHARE),
                      env=argilla_env(argilla_server))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sending records" not in result.stderr and "batch/s" not in result.stderr  # no SDK progress bar
    owner = argilla_sdk.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)
    dataset = owner.datasets(DATASET, workspace=WORKSPACE)
    return {"stdout": result.stdout, "owner": owner, "dataset": dataset, "rg": argilla_sdk}


def records_of(pushed) -> dict:
    return {record.id: record for record in pushed["dataset"].records(with_responses=True)}


def test_push_sends_a_stratified_sample_with_suggestions_and_metadata(pushed, folder):
    rows, records = rows_of(folder), records_of(pushed)
    assert len(records) == N and "8 rows sampled, 8 added, 0 already there" in pushed["stdout"]
    graded = [row for row in rows.values() if row["outcome"] in ("kept", "rejected")]
    every = strata_counts(graded)
    sampled = strata_counts([rows[i] for i in records])
    assert set(sampled) == set(every) and len(every) >= 4  # every stratum is represented
    assert all(sampled[s] <= every[s] for s in every) and sum(sampled.values()) == N
    assert {rows[i]["config"] for i in records} >= {"k2", "k3", "rejected"}
    settings = pushed["dataset"].settings
    names = ["skill_1", "skill_2", "skill_3", "on_topic", "makes_sense", "within_length", "comment"]
    assert [q.name for q in settings.questions] == names
    assert [q.required for q in settings.questions][:3] == [True, True, False]
    assert "n/a" in settings.questions[2].title and settings.distribution.min_submitted == 2
    assert "name rule" in settings.guidelines.lower() and "fake-teacher" in settings.guidelines
    judge = json.loads((folder / "manifest.json").read_text())["models"]["judge"]["model"]
    for record_id, record in records.items():
        row = rows[record_id]
        assert record.fields["topic"] == row["topic"] and record.fields["answer"] == row["answer"]
        assert all(skill in record.fields["skills"] for skill in row["skills"])
        assert record.fields["sentences"].startswith(f"{row['sentences']} sentence")
        meta = record.metadata
        assert (meta["k"], meta["combination"], meta["setting"]) == (row["k"], row["id"], row["setting"])
        assert (meta["outcome"], meta["judge_total"]) == (row["outcome"], sum(row["points"]))
        assert meta["failed"] == failed_kinds(row["points"], row["k"])
        runs = [p for p, s in zip(row["grader_points"], row["grader_status"], strict=True) if s == "ok"]
        names = [f"skill_{j + 1}" for j in range(row["k"])] + ["on_topic", "makes_sense", "within_length"]
        suggested = {s.question_name: s for s in record.suggestions}
        assert set(suggested) == set(names)
        for i, name in enumerate(names):
            assert suggested[name].value == ("yes" if row["points"][i] == 1 else "no")
            assert suggested[name].agent == judge
            share = sum(run[i] == row["points"][i] for run in runs) / len(runs)
            assert suggested[name].score == pytest.approx(share)
    doubles = [i for i, r in records.items() if r.metadata["annotators"] == 2]
    assert len(doubles) == 4  # half of 8
    judged = {i for i, r in records.items() if any(True for _ in r.responses)}
    assert judged == set(records) - set(doubles)  # skillmix-judge answered the single-annotator records


def test_pushing_again_adds_nothing(pushed, folder, argilla_server):
    again = skillmix(*push_args(folder, DATASET, "--n", str(N), "--two-annotators", SHARE),
                     env=argilla_env(argilla_server))  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 added, 8 already there" in again.stdout and len(records_of(pushed)) == N


TEXT = "document.body ? document.body.innerText : ''"  # what the page shows


def test_the_pushed_dataset_renders_in_chromium(
    folder, argilla_server, argilla_sdk, signed_in_page, tmp_path
):
    """A freshly pushed dataset's annotation page shows a record's fields and the questions."""
    from playwright.sync_api import Error as PlaywrightError

    from skillmix.review.push import push

    env = argilla_env(argilla_server)
    result = push(
        folder, "review-ui", workspace=WORKSPACE, n=3, two_annotators=0.0, env=env, log=lambda m: None
    )
    answers = [row["answer"] for row in rows_of(folder).values()]
    shown = " || ".join(f"document.body.innerText.includes({text!r})" for text in answers)
    titles = ["Skill 1 correctly illustrated?", "Pertains to the topic?", "Within the sentence limit?"]
    wanted = " && ".join(f"document.body.innerText.includes({t!r})" for t in [*titles, "Topic", "Skills"])
    page = signed_in_page
    try:
        page.goto(result.url, wait_until="commit")
        page.wait_for_function(f"document.body && ({shown}) && {wanted}", timeout=90_000, polling=250)
    except PlaywrightError as exc:
        page.screenshot(path=tmp_path / "review.png")
        pytest.fail(f"{exc.message}: {page.evaluate(TEXT)[:500]!r} ({tmp_path / 'review.png'})")
    text = page.evaluate(TEXT)
    assert sum(answer in text for answer in set(answers)) >= 1 and "Submit" in text


@pytest.fixture(scope="module")
def answered(pushed, folder, argilla_server):
    """alice and bob answer as the module docstring says; returns the scripted rows R1, R2, R3."""
    rg, owner = pushed["rg"], pushed["owner"]
    rows, records = rows_of(folder), records_of(pushed)
    single = sorted(i for i, r in records.items() if r.metadata["annotators"] == 1)
    double = sorted(i for i, r in records.items() if r.metadata["annotators"] == 2)
    r1 = next(i for i in single if rows[i]["outcome"] == "kept")
    r2 = next(i for i in single if rows[i]["outcome"] == "rejected" and "skill" in failed_kinds(
        rows[i]["points"], rows[i]["k"]) and "length" not in failed_kinds(rows[i]["points"], rows[i]["k"])
        and not rows[i]["named_skills"])  # fmt: skip
    r3 = next(i for i in double if rows[i]["outcome"] == "kept")
    keys = {name: annotator(rg, owner, name) for name in ("alice", "bob")}
    for record_id, record in records.items():
        judge = {s.question_name: s.value for s in record.suggestions}
        alice = {**judge, **({"makes_sense": "no"} if record_id == r1 else {})}
        alice = {q: "yes" for q in judge} if record_id == r2 else alice
        submit(rg, argilla_server.api_url, keys["alice"], record, {**alice, "comment": "ok"})
        if record_id in double:
            bob = {**judge, **({"on_topic": "no"} if record_id == r3 else {})}
            submit(rg, argilla_server.api_url, keys["bob"], record, bob)
    return {"r1": r1, "r2": r2, "r3": r3, "double": double, "sample": sorted(records)}


def annotator(rg, owner, name: str) -> str:
    """A new annotator of the workspace; returns their API key (the SDK does not show it)."""
    user = rg.User(username=name, password=f"{name}-password-1", role="annotator", client=owner).create()
    owner.workspaces(WORKSPACE).add_user(user)
    return owner.api.http_client.get(f"/api/v1/users/{user.id}").json()["api_key"]


def submit(rg, url: str, key: str, record, answers: dict[str, str]) -> None:
    client = rg.Argilla(api_url=url, api_key=key)
    values = [rg.Response(question, value, client.me.id, "submitted") for question, value in answers.items()]
    model = rg.responses.UserResponse(values, _record=record).api_model()
    client.api.records.create_record_response(record._server_id, model)


@pytest.fixture(scope="module")
def pulled(answered, folder, argilla_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("pulled") / "reviewed"
    out.mkdir()  # an empty folder is taken (and replaced whole)
    result = skillmix("review", "pull", "--data", str(folder), "--dataset", DATASET, "--workspace", WORKSPACE,
                      "--out", str(out), env=argilla_env(argilla_server))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "manifest": json.loads((out / "manifest.json").read_text())}


def kappa(a: list[float], b: list[float]) -> float | None:
    """Cohen's kappa, written out: (p_o - p_e) / (1 - p_e)."""
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_a, p_b = sum(a) / n, sum(b) / n
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    return None if p_e == 1 else (p_o - p_e) / (1 - p_e)


def check(figure: dict, judge: list[float], human: list[float]) -> None:
    n = len(judge)
    assert figure["n"] == n
    assert figure["raw"] == pytest.approx(sum(x == y for x, y in zip(judge, human, strict=True)) / n)
    expected = kappa(judge, human)
    assert figure["kappa"] == (None if expected is None else pytest.approx(expected))
    assert figure["raw_ci"][0] <= figure["raw"] <= figure["raw_ci"][1]
    if expected is not None:
        assert (
            figure["kappa_ci"][0] <= figure["kappa"] + 1e-9
            and figure["kappa"] <= figure["kappa_ci"][1] + 1e-9
        )


def item(rows: dict, ids: list[str], index, changed: str | None = None, to: float = 0.0) -> list[float]:
    """The judge's decided point ``index(row)`` of each row; ``changed``'s replaced by ``to``."""
    return [to if i == changed else float(rows[i]["points"][index(rows[i])]) for i in ids]


def test_pull_agreement_figures_by_hand(pulled, answered, folder):
    rows, review = rows_of(folder), pulled["manifest"]["review"]
    r1, r2, r3, sample, double = (answered[key] for key in ("r1", "r2", "r3", "sample", "double"))
    figures = review["agreement"]
    judge_fm = [rows[i]["full_marks"] for i in sample]
    human_fm = [0.0 if i in (r1, r3) else 1.0 if i == r2 else rows[i]["full_marks"] for i in sample]
    check(figures["judge_human"]["full_marks"], judge_fm, human_fm)
    assert figures["judge_human"]["full_marks"]["raw"] == pytest.approx((N - 3) / N)
    ci = bootstrap_intervals(judge_fm, human_fm, seed=0)  # rows in id order, as pull pairs them
    assert figures["judge_human"]["full_marks"]["raw_ci"] == pytest.approx(ci["raw"])
    sense, topic = (lambda r: r["k"] + 1), (lambda r: r["k"])
    check(figures["judge_human"]["makes_sense"], item(rows, sample, sense), item(rows, sample, sense, r1))
    # on R3 alice says yes and bob no: a tie, which earns 0
    check(figures["judge_human"]["on_topic"], item(rows, sample, topic), item(rows, sample, topic, r3))
    skills_judge = [float(p) for i in sample for p in rows[i]["points"][: rows[i]["k"]]]
    skills_human = [1.0 if i == r2 else float(p) for i in sample for p in rows[i]["points"][: rows[i]["k"]]]
    check(figures["judge_human"]["skills"], skills_judge, skills_human)
    length = figures["judge_human"]["within_length"]  # alice copied the judge; all within the limit
    assert (length["raw"], length["kappa"], length["kappa_ci"]) == (1.0, None, None)
    # human vs human, on the two-annotator rows: alice = the judge, bob fails on_topic on R3
    alice_fm = [rows[i]["full_marks"] for i in double]
    bob_fm = [0.0 if i == r3 else rows[i]["full_marks"] for i in double]
    check(figures["human_human"]["full_marks"], alice_fm, bob_fm)
    check(figures["human_human"]["on_topic"], item(rows, double, topic), item(rows, double, topic, r3))
    kept = [i for i in sample if rows[i]["outcome"] == "kept"]
    precision = figures["judge_precision_kept"]
    assert (precision["n"], precision["share"]) == (len(kept), pytest.approx((len(kept) - 2) / len(kept)))
    assert review["counts"] == {"records": N, "reviewed": N, "two_annotators": len(double), "incomplete": 0,
                                "to_kept": 1, "to_rejected": 2, "unchanged": N - 3}  # fmt: skip


def test_the_reviewed_folder(pulled, answered, folder, tmp_path):
    from datasets import load_dataset

    before, after = rows_of(folder), rows_of(pulled["out"])
    r1, r2, r3 = answered["r1"], answered["r2"], answered["r3"]
    assert set(after) == set(before)
    for moved in (r1, r3):
        assert before[moved]["config"] == f"k{before[moved]['k']}" and after[moved]["config"] == "rejected"
        assert after[moved]["review"]["decided_by"] == "human" and after[moved]["outcome"] == "rejected"
    assert "missed Text makes sense" in after[r1]["review"]["reason"]
    assert after[r3]["review"]["annotators"] == 2 and "missed Pertains to" in after[r3]["review"]["reason"]
    assert before[r2]["config"] == "rejected" and after[r2]["config"] == f"k{before[r2]['k']}"
    assert after[r2]["review"]["judge_points"] == before[r2]["points"] and after[r2]["full_marks"] == 1.0
    assert after[r2]["points"] == after[r2]["review"]["human_points"] and after[r2]["failed_points"] == []
    assert "full marks; the judge had missed" in after[r2]["review"]["reason"]
    untouched = [i for i in before if i not in answered["sample"]]
    assert untouched and all(after[i]["review"] is None and after[i]["config"] == before[i]["config"]
                             for i in untouched)  # fmt: skip
    manifest = pulled["manifest"]
    moved = {(m["id"], m["from"], m["to"]) for m in manifest["review"]["moved"]}
    k1, k2 = before[r1]["k"], before[r2]["k"]
    assert moved == {(r1, f"k{k1}", "rejected"), (r3, f"k{before[r3]['k']}", "rejected"),
                     (r2, "rejected", f"k{k2}")}  # fmt: skip
    for name, info in manifest["configs"].items():
        assert info["rows"] == sum(row["config"] == name for row in after.values()) > 0
        loaded = load_dataset(str(pulled["out"]), name, split="train", cache_dir=str(tmp_path / "cache"))
        assert sorted(loaded["id"]) == sorted(i for i, row in after.items() if row["config"] == name)
    per_k = manifest["counts"]["per_k"][f"k{k2}"]
    assert per_k["kept"] == manifest["configs"][f"k{k2}"]["rows"]
    card = (pulled["out"] / "README.md").read_text()
    assert "## Human review" in card and f"Argilla dataset `{DATASET}`" in card
    assert all(f"`{i}`" in card for i in (r1, r2, r3)) and "| full_marks |" in card
    assert not (folder / "review").exists() and rows_of(folder) == before  # the input is untouched


def hub_env(hub, home: Path) -> dict[str, str]:
    env = {k: v for k, v in cli_env().items() if not k.startswith("HF_")}
    return env | {"HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home),
                  "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                  "HF_UPDATE_DOWNLOAD_COUNTS": "0", "HF_TOKEN": HUB_TOKEN}  # fmt: skip


def test_publishing_the_reviewed_folder_names_the_moved_rows(pulled, answered, folder, tmp_path):
    from skillmix.testing.fake_hub import FakeHubServer

    with FakeHubServer(token=HUB_TOKEN, storage=tmp_path / "hub") as hub:
        for data, version in ((folder, "v1.0.0"), (pulled["out"], "v1.1.0")):
            result = skillmix("publish", "--repo", REPO, "--version", version, "--data", str(data),
                              "--eval-n", "5", env=hub_env(hub, tmp_path / "hf"))  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
        files = hub.uploaded_files(REPO, revision="v1.1.0")
    log = json.loads(files["manifest.json"])["release"]["changelog"]
    assert log["previous_version"] == "v1.0.0" and log["review"]["dataset"] == DATASET
    assert {m["id"] for m in log["review"]["moved"]} == {answered[r] for r in ("r1", "r2", "r3")}
    card = files["README.md"].decode()
    assert "Human review (Argilla dataset" in card
    for key, direction in (("r1", "` -> `rejected`"), ("r3", "` -> `rejected`"), ("r2", "`rejected` -> `k")):
        line = next(line for line in card.splitlines() if f"`{answered[key]}`" in line)
        assert direction in line
    assert log["rows"]["rejected"]["added"] == 2 and log["rows"]["rejected"]["removed"] == 1


# ---- bad input ------------------------------------------------------------------------------------------


def one_line_error(capsys, argv, env: dict[str, str], monkeypatch) -> str:
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("skillmix: error: ") and "Traceback" not in err, err
    return err


def test_bad_push_input(folder, argilla_server, pushed, capsys, monkeypatch, tmp_path):
    from skillmix.processes import free_port

    good = {"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    args = push_args(folder, "review-bad")
    assert "ARGILLA_API_URL is not set" in one_line_error(capsys, args, {}, monkeypatch)
    unreachable = {**good, "ARGILLA_API_URL": f"http://127.0.0.1:{free_port()}"}
    assert "cannot reach Argilla" in one_line_error(capsys, args, unreachable, monkeypatch)
    wrong = {**good, "ARGILLA_API_KEY": "not-the-key"}
    assert "refused the API key" in one_line_error(capsys, args, wrong, monkeypatch)
    other = one_line_error(capsys, push_args(folder, DATASET, "--n", "1"), good, monkeypatch)
    assert f"Argilla dataset {DATASET} (workspace {WORKSPACE}) exists with other settings (questions" in other
    assert len(records_of(pushed)) == N  # nothing was added
    (tmp_path / "not-a-dataset").mkdir()
    not_data = one_line_error(capsys, push_args(tmp_path / "not-a-dataset"), good, monkeypatch)
    assert "is not a skillmix dataset folder (no manifest.json)" in not_data
    assert pushed["owner"].datasets("review-bad", workspace=WORKSPACE) is None  # never created
    process = skillmix(*args, env=argilla_env(argilla_server, ARGILLA_API_KEY="wrong"))  # as a user runs it
    assert process.returncode == 2 and process.stderr.count("\n") == 1 and process.stdout == ""


def test_bad_pull_input(folder, argilla_server, pushed, capsys, monkeypatch, tmp_path):
    from skillmix.review.push import push

    good = {"ARGILLA_API_URL": argilla_server.api_url, "ARGILLA_API_KEY": argilla_server.api_key}
    push(folder, "review-empty", workspace=WORKSPACE, n=2, env=good, log=lambda m: None)
    capsys.readouterr()  # the SDK's progress bar
    out = tmp_path / "out"

    def pull(*extra, data=folder, dataset="review-empty", env=good):
        argv = ["review", "pull", "--data", str(data), "--dataset", dataset, "--workspace", WORKSPACE]
        return one_line_error(capsys, [*argv, "--out", str(out), *extra], env, monkeypatch)

    assert "has no submitted responses yet" in pull()
    assert "no Argilla dataset nope in workspace" in pull(dataset="nope")
    assert "ARGILLA_API_URL is not set" in pull(env={})
    assert "is not a skillmix dataset folder" in pull(data=tmp_path / "missing")
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, no staging left
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert "exists and is not empty" in pull()
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    same = ["review", "pull", "--data", str(folder), "--dataset", DATASET, "--out", str(folder)]
    assert "is the input folder" in one_line_error(capsys, same, good, monkeypatch)
    inside = [*same[:-1], str(folder / "reviewed")]
    assert "is inside the input folder" in one_line_error(capsys, inside, good, monkeypatch)
    assert not (folder / "reviewed").exists()
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())
