"""The Argilla review loop, for real: push a stratified sample of a dataset folder built by the pipeline,
annotate it through the Argilla SDK as two annotators, pull, check every figure by hand, load and publish
the reviewed folder; bad input is one line, exit code 2, nothing written.

The folder is built by ``skillmix dataset`` against the fake OpenAI server (k = 2, 3; 6 rows each; about
half of them kept); the Argilla server is the session's (tests/argilla_fixtures.py). The push is blind: the
annotators' script reads the judge's answers from the dataset folder (its own majority vote over the
grader runs, recomputed here), never from Argilla. Scripted answers: ``alice`` answers every record as the
judge voted, except that she fails "makes sense" on one kept record (R1) and gives full marks to one
rejected record (R2), both single-annotator records; ``bob`` answers the two-annotator records as the judge
voted, except that he fails "on topic" on one kept record (R3).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import CLI, cli_env, hub_changes, run_cli, run_here

from skillmix.cli import main
from skillmix.review.agreement import bootstrap_intervals
from skillmix.review.sample import (
    allocate,
    failed_kinds,
    shown_ids,
    strata_counts,
    stratified_sample,
    two_annotator_ids,
)

pytest_plugins = ["argilla_fixtures"]
pytestmark = [
    pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated"),
    pytest.mark.filterwarnings("ignore:`user_id` not provided"),
    pytest.mark.filterwarnings("ignore:Dataset with name"),
]

DATASET, WORKSPACE, N, SHARE = "review-test", "review-test", 8, "0.5"
REPO = "skillmix-tester/reviewed"


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
    ids = [f"r{i}" for i in range(8)]
    shown = shown_ids(ids, 0.25, seed=4)
    assert len(shown) == 2 and shown == shown_ids(ids, 0.25, seed=4) and shown <= set(ids)
    double = two_annotator_ids(ids, 0.5, seed=4, exclude=shown)
    assert len(double) == 4 and not double & shown  # nobody reviews a pre-filled record twice
    assert len(two_annotator_ids(ids, 1.0, exclude=shown)) == 6  # fewer when too few are left
    with pytest.raises(ValueError, match="--show-judge must be a share between 0 and 1"):
        shown_ids(ids, -0.1)


def test_human_decisions_vote_and_apply_the_text_checks():
    from skillmix.review.decide import Annotation, decide
    from skillmix.rules import ScoringRules

    row = {"k": 2, "skills": ["metaphor", "irony"], "topic": "Sewing", "answer": "A short text. Another one.",
           "points": [1, 1, 1, 1, 0], "full_marks": 0.0, "outcome": "rejected"}  # fmt: skip
    rules = ScoringRules.from_config({"length_override": True, "name_penalty": True})
    yes = {q: "yes" for q in ("skill_1", "skill_2", "on_topic", "makes_sense", "within_length")}
    alice, bob = Annotation("alice", dict(yes)), Annotation("bob", {**yes, "skill_2": "no", "skill_3": "yes"})
    both = decide(row, [bob, alice], rules)
    assert [a.user for a in both.annotations] == ["alice", "bob"]
    assert both.human.tolist() == [1, 0, 1, 1, 1]  # a tie earns 0; skill_3 does not apply to k = 2
    assert both.decided.tolist() == [1, 0, 1, 1, 0]  # two sentences: the counter fails the length point
    assert both.full_marks == 0.0
    named = decide({**row, "answer": "It reads like a metaphor."}, [alice], rules)
    assert named.decided.tolist() == [0, 1, 1, 1, 1] and named.full_marks == 0.0  # the name rule
    assert decide({**row, "answer": "One sentence."}, [alice], rules).full_marks == 1.0
    gap = decide(row, [Annotation("carol", {**yes, "skill_2": ""})], rules)
    assert gap.decided is None and gap.full_marks is None  # an item nobody answered: no decision


def test_review_commands_nest_and_need_an_action(capsys):
    from skillmix.cli import build_parser
    from skillmix.review.cli import cmd_pull, cmd_push

    args = build_parser().parse_args(["review", "push", "--data", "d", "--dataset", "n", "--n", "3"])
    assert (args.func, args.action, args.n) == (cmd_push, "push", 3)
    args = build_parser().parse_args(["review", "pull", "--data", "d", "--dataset", "n", "--out", "o"])
    assert (args.func, args.out) == (cmd_pull, "o")
    assert main(["review"]) == 2
    assert capsys.readouterr().err == (
        "skillmix: error: skillmix review needs an action: push or pull (see skillmix review push --help)\n"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["review", "publish"])
    assert exit_info.value.code == 2 and "invalid choice" in capsys.readouterr().err


# ---- the loop against the server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(build_dataset) -> Path:
    """The session's D(2,3) of 6 rows each (about half kept); shared, never changed."""
    return build_dataset("2,3", 6, 5, 0.5)


def rows_of(folder: Path) -> dict[str, dict]:
    manifest = json.loads((folder / "manifest.json").read_text())
    return {
        row["id"]: {**row, "config": name}
        for name, info in manifest["configs"].items()
        for row in pq.read_table(folder / info["path"]).to_pylist()
    }


def argilla_changes(server, **changes: str) -> dict[str, str]:
    return {"ARGILLA_API_URL": server.api_url, "ARGILLA_API_KEY": server.api_key, **changes}


def argilla_env(server, **changes: str) -> dict[str, str]:
    """A process's environment for the session's Argilla server (also what ``push(env=...)`` reads)."""
    return cli_env(argilla_changes(server, **changes))


def skillmix(*args: str, server, **changes: str) -> subprocess.CompletedProcess:
    """``skillmix ARGS`` in this process (``run_here``) against the Argilla ``server``, ``changes`` to the
    environment applied for the call; its stdout and stderr captured."""
    return run_here([*CLI, *args], argilla_changes(server, **changes))


def push_args(folder, dataset=DATASET, *extra):
    return ["review", "push", "--data", str(folder), "--dataset", dataset, "--workspace", WORKSPACE, *extra]


@pytest.fixture(scope="module")
def pushed(folder, argilla_server, argilla_sdk):
    """The sample pushed by the real command line: its output, the owner's client and the dataset."""
    result = skillmix(*push_args(folder, DATASET, "--n", str(N), "--two-annotators", SHARE),
                      server=argilla_server)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Sending records" not in result.stderr and "batch/s" not in result.stderr  # no SDK progress bar
    owner = argilla_sdk.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)
    dataset = owner.datasets(DATASET, workspace=WORKSPACE)
    return {"stdout": result.stdout, "owner": owner, "dataset": dataset, "rg": argilla_sdk}


def records_of(pushed) -> dict:
    return {record.id: record for record in pushed["dataset"].records(with_responses=True)}


def judge_vote(row: dict) -> list[float]:
    """The judge's own answers, by hand from the folder: the strict majority of the parsed grader runs per
    item (a tie earns 0); zeros when no run parsed."""
    width = row["k"] + 3
    runs = [p for p, s in zip(row["grader_points"], row["grader_status"], strict=True) if s == "ok"]
    return (
        [float(2 * sum(run[i] for run in runs) > len(runs)) for i in range(width)] if runs else [0.0] * width
    )


def question_names(k: int) -> list[str]:
    return [f"skill_{j + 1}" for j in range(k)] + ["on_topic", "makes_sense", "within_length"]


BLIND_METADATA = {"k", "combination", "setting", "annotators", "judge_shown"}


def test_a_blind_push_sends_a_stratified_sample_and_nothing_of_the_judge(pushed, folder):
    rows, records = rows_of(folder), records_of(pushed)
    assert len(records) == N and "8 rows sampled, 8 added, 0 already there" in pushed["stdout"]
    assert "blind: no record shows the judge's answers" in pushed["stdout"]
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
    assert "name rule is applied afterwards" in settings.guidelines and "fake-teacher" in settings.guidelines
    assert "This dataset is blind" in settings.guidelines and "pre-filled" not in settings.guidelines
    for record_id, record in records.items():
        row = rows[record_id]
        assert record.fields["topic"] == row["topic"] and record.fields["answer"] == row["answer"]
        assert all(skill in record.fields["skills"] for skill in row["skills"])
        limit = {2: "one sentence", 3: "two sentences"}[row["k"]]
        assert record.fields["sentences"] == f"At most {limit} (the limit for {row['k']} skills)"
        assert list(record.suggestions) == []  # nothing pre-filled
        meta = record.metadata
        assert set(meta) == BLIND_METADATA and meta["judge_shown"] == "no"  # nothing of the judge's verdict
        assert (meta["k"], meta["combination"], meta["setting"]) == (row["k"], row["id"], row["setting"])
    doubles = [i for i, r in records.items() if r.metadata["annotators"] == 2]
    assert len(doubles) == 4  # half of 8
    judged = {i for i, r in records.items() if any(True for _ in r.responses)}
    assert judged == set(records) - set(doubles)  # the skillmix-judge placeholder completes the others


def test_an_annotator_sees_no_answer_but_their_own(pushed, argilla_server):
    """Through the annotator's own queue (what the UI asks): no suggestion, no hidden metadata, and not the
    skillmix-judge placeholder that completes a single-annotator record."""
    rg, owner = pushed["rg"], pushed["owner"]
    key = annotator(rg, owner, "carol")
    http = rg.Argilla(api_url=argilla_server.api_url, api_key=key).api.http_client
    url = f"/api/v1/me/datasets/{pushed['dataset'].id}/records/search"
    found = http.post(url, params=[("include", "responses"), ("include", "suggestions")], json={}).json()
    assert found["total"] == N
    for item in found["items"]:
        record = item["record"]
        assert record["suggestions"] == [] and record["responses"] == []
        assert set(record["metadata"]) <= BLIND_METADATA - {"judge_shown"}  # the hidden property is hidden
    placeholder = [r for r in records_of(pushed).values() if any(True for _ in r.responses)]
    assert placeholder  # the owner sees the placeholder's responses; carol did not


def test_pushing_again_adds_nothing(pushed, folder, argilla_server):
    again = skillmix(*push_args(folder, DATASET, "--n", str(N), "--two-annotators", SHARE),
                     server=argilla_server)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 added, 8 already there" in again.stdout and len(records_of(pushed)) == N


TEXT = "document.body ? document.body.innerText : ''"  # what the page shows


def test_the_blind_annotation_page_has_nothing_pre_selected(
    folder, argilla_server, argilla_sdk, signed_in_page, tmp_path
):
    """In headless Chromium a blind record's form has no answer selected; the same check on a record pushed
    with the judge's answers shown finds them selected (so the check can fail)."""
    from playwright.sync_api import Error as PlaywrightError

    from skillmix.review.push import push

    env = argilla_env(argilla_server)
    answers = [row["answer"] for row in rows_of(folder).values()]
    shown = " || ".join(f"document.body.innerText.includes({text!r})" for text in answers)
    titles = ["Skill 1 correctly illustrated?", "Pertains to the topic?", "Within the sentence limit?"]
    wanted = " && ".join(f"document.body.innerText.includes({t!r})" for t in [*titles, "Topic", "Skills"])
    selected = "document.querySelectorAll('input:checked').length"
    page = signed_in_page
    counts = {}
    for name, share in (("review-ui-shown", 1.0), ("review-ui", 0.0)):
        result = push(folder, name, workspace=WORKSPACE, n=3, two_annotators=0.0, show_judge=share, env=env,
                      log=lambda m: None)  # fmt: skip
        try:
            page.goto(result.url, wait_until="commit")
            page.wait_for_function(f"document.body && ({shown}) && {wanted}", timeout=90_000, polling=250)
            if share:  # the judge's answers appear as selected options
                page.wait_for_function(f"{selected} > 0", timeout=30_000, polling=250)
            else:
                page.wait_for_timeout(3_000)  # longer than the shown page took to pre-select
        except PlaywrightError as exc:
            page.screenshot(path=tmp_path / f"{name}.png")
            pytest.fail(f"{exc.message}: {page.evaluate(TEXT)[:500]!r} ({tmp_path / name}.png)")
        counts[name] = page.evaluate(selected)
        text = page.evaluate(TEXT)
        assert sum(answer in text for answer in set(answers)) >= 1 and "Submit" in text
        assert "Sentence limit" in text and "(the limit for" in text
    assert counts["review-ui-shown"] >= 5 and counts["review-ui"] == 0, counts


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
        row = rows[record_id]
        judge = {
            q: "yes" if v == 1 else "no"
            for q, v in zip(question_names(row["k"]), judge_vote(row), strict=True)
        }
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
                      "--out", str(out), server=argilla_server)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {"out": out, "stdout": result.stdout, "manifest": json.loads((out / "manifest.json").read_text())}


def kappa(a: list[float], b: list[float], w: list[float] | None = None) -> float | None:
    """Cohen's kappa, written out: (p_o - p_e) / (1 - p_e), with weights ``w`` (1 each by default)."""
    w = [1.0] * len(a) if w is None else w
    total = sum(w)
    p_o = sum(wi for x, y, wi in zip(a, b, w, strict=True) if x == y) / total
    p_a = sum(wi * x for x, wi in zip(a, w, strict=True)) / total
    p_b = sum(wi * y for y, wi in zip(b, w, strict=True)) / total
    p_e = p_a * p_b + (1 - p_a) * (1 - p_b)
    return None if abs(p_e - 1) < 1e-12 else (p_o - p_e) / (1 - p_e)


def raw(a: list[float], b: list[float], w: list[float] | None = None) -> float:
    w = [1.0] * len(a) if w is None else w
    return sum(wi for x, y, wi in zip(a, b, w, strict=True) if x == y) / sum(w)


def weights_by_hand(rows: dict, ids: list[str]) -> dict[str, float]:
    """N_s / n_s: the folder's graded rows of a record's stratum over the records of it among ``ids``."""
    label = lambda row: "/".join(map(str, (row["k"], row["outcome"], failed_kinds(row["points"], row["k"]))))  # noqa: E731
    population = strata_counts([row for row in rows.values() if row["outcome"] in ("kept", "rejected")])
    sample = strata_counts([rows[i] for i in set(ids)])
    return {i: population[label(rows[i])] / sample[label(rows[i])] for i in set(ids)}


def check(figure: dict, judge: list[float], human: list[float], ids: list[str], rows: dict) -> None:
    """Both sides of a figure by hand: unweighted, and weighted by the strata of the records ``ids``."""
    w = weights_by_hand(rows, ids)
    pair_w = [w[i] for i in ids]
    assert (figure["n"], figure["records"]) == (len(judge), len(set(ids)))
    for side, weights in (("unweighted", None), ("weighted", pair_w)):
        f = figure[side]
        assert f["raw"] == pytest.approx(raw(judge, human, weights)), side
        expected = kappa(judge, human, weights)
        assert f["kappa"] == (None if expected is None else pytest.approx(expected)), side
        assert f["raw_ci"][0] - 1e-9 <= f["raw"] <= f["raw_ci"][1] + 1e-9
        if expected is not None and f["kappa_ci"] is not None:
            assert f["kappa_ci"][0] - 1e-9 <= f["kappa"] <= f["kappa_ci"][1] + 1e-9


def item(rows: dict, ids: list[str], index, changed: str | None = None, to: float = 0.0) -> list[float]:
    """The judge's own vote on item ``index(row)`` of each row; ``changed``'s replaced by ``to``."""
    return [to if i == changed else judge_vote(rows[i])[index(rows[i])] for i in ids]


def test_pull_agreement_figures_by_hand(pulled, answered, folder):
    rows, review = rows_of(folder), pulled["manifest"]["review"]
    r1, r2, r3, sample, double = (answered[key] for key in ("r1", "r2", "r3", "sample", "double"))
    figures = review["agreement"]
    assert review["mode"] == "blind" and figures["records"] == N
    # full marks: the row's (after the text checks) against the humans' (after them too)
    judge_fm = [rows[i]["full_marks"] for i in sample]
    human_fm = [0.0 if i in (r1, r3) else 1.0 if i == r2 else rows[i]["full_marks"] for i in sample]
    check(figures["judge_human"]["full_marks"], judge_fm, human_fm, sample, rows)
    assert figures["judge_human"]["full_marks"]["unweighted"]["raw"] == pytest.approx((N - 3) / N)
    ci = bootstrap_intervals(judge_fm, human_fm, seed=0)  # one item per record, in id order
    assert figures["judge_human"]["full_marks"]["unweighted"]["raw_ci"] == pytest.approx(ci["raw"])
    # the other items: the judge's own vote against the humans' answers, both before the text checks
    sense, topic = (lambda r: r["k"] + 1), (lambda r: r["k"])
    check(figures["judge_human"]["makes_sense"], item(rows, sample, sense), item(rows, sample, sense, r1),
          sample, rows)  # fmt: skip
    # on R3 alice says yes and bob no: a tie, which earns 0
    check(figures["judge_human"]["on_topic"], item(rows, sample, topic), item(rows, sample, topic, r3),
          sample, rows)  # fmt: skip
    skills_ids = [i for i in sample for _ in range(rows[i]["k"])]
    skills_judge = [p for i in sample for p in judge_vote(rows[i])[: rows[i]["k"]]]
    skills_human = [1.0 if i == r2 else p for i in sample for p in judge_vote(rows[i])[: rows[i]["k"]]]
    check(figures["judge_human"]["skills"], skills_judge, skills_human, skills_ids, rows)
    length = figures["judge_human"]["within_length"]["unweighted"]  # alice copied the judge's vote
    assert length["raw"] == 1.0
    # the sentence counter against the humans' "within length" (= the judge's vote here)
    limit = {2: 1, 3: 2}
    counter = [float(0 < rows[i]["sentences"] <= limit[rows[i]["k"]]) for i in sample]
    length_vote = item(rows, sample, lambda r: r["k"] + 2)
    check(figures["counter_human"]["within_length"], counter, length_vote, sample, rows)
    # human vs human, on the two-annotator rows: alice = the judge, bob fails on_topic on R3
    alice_fm = [rows[i]["full_marks"] for i in double]
    bob_fm = [0.0 if i == r3 else rows[i]["full_marks"] for i in double]
    check(figures["human_human"]["full_marks"], alice_fm, bob_fm, double, rows)
    check(figures["human_human"]["on_topic"], item(rows, double, topic), item(rows, double, topic, r3),
          double, rows)  # fmt: skip
    kept = [i for i in sample if rows[i]["outcome"] == "kept"]
    precision = figures["judge_precision_kept"]
    values = [0.0 if i in (r1, r3) else 1.0 for i in kept]
    w = weights_by_hand(rows, kept)
    assert (precision["n"], precision["unweighted"]["share"]) == (
        len(kept),
        pytest.approx(sum(values) / len(kept)),
    )
    weighted = sum(w[i] * v for i, v in zip(kept, values, strict=True)) / sum(w[i] for i in kept)
    assert precision["weighted"]["share"] == pytest.approx(weighted)
    assert precision["weighted"]["coverage"] == 1.0  # every kept stratum has a reviewed record
    assert review["counts"] == {"records": N, "reviewed": N, "blind": N, "shown": 0,
                                "two_annotators": len(double), "incomplete": 0,
                                "to_kept": 1, "to_rejected": 2, "unchanged": N - 3}  # fmt: skip
    graded = [row for row in rows.values() if row["outcome"] in ("kept", "rejected")]
    assert review["weighting"]["strata"] == strata_counts(graded)
    assert "weighted to the dataset by stratum" in pulled["stdout"] and "counter~human" in pulled["stdout"]


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
    figure = manifest["review"]["agreement"]["judge_human"]["full_marks"]
    low, high = figure["weighted"]["raw_ci"]
    cell = f"{figure['weighted']['raw']:.2f} [{low:.2f}, {high:.2f}] ({figure['unweighted']['raw']:.2f})"
    assert f"| full_marks | {N} | {cell} |" in card  # n, the weighted figure, its interval, the unweighted
    assert (
        f"Agreement on the {N} blind records" in card and "weighted back to the dataset's composition" in card
    )
    assert "95% interval" in card and "resamples of the records" in card
    assert "| sentence counter vs human" in card
    assert "calibration of the judge" in card and "because the\nrecords were blind" in card
    assert not (folder / "review").exists() and rows_of(folder) == before  # the input is untouched


def test_publishing_the_reviewed_folder_names_the_moved_rows(
    pulled, answered, folder, hub, tmp_path, monkeypatch
):
    home = tmp_path / "hf"
    hub.configure_clients(monkeypatch, home)  # huggingface_hub and datasets read their endpoint at import
    for data, version in ((folder, "v1.0.0"), (pulled["out"], "v1.1.0")):
        result = run_here([*CLI, "publish", "--repo", REPO, "--version", version, "--data", str(data),
                           "--eval-n", "5"], hub_changes(hub, home))  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
    files = hub.uploaded_files(REPO, revision="v1.1.0")
    log = json.loads(files["manifest.json"])["release"]["changelog"]
    assert log["previous_version"] == "v1.0.0" and log["review"]["dataset"] == DATASET
    assert {m["id"] for m in log["review"]["moved"]} == {answered[r] for r in ("r1", "r2", "r3")}
    card = files["README.md"].decode()
    assert "Human review (Argilla dataset" in card
    section = card[card.index("## Human review") : card.index("## Leakage audit")]
    assert f"Agreement on the {N} blind records" in section and "| full_marks | 8 |" in section
    assert "| row | k | from | to |" not in section  # the moved rows are the changelog's
    for key, direction in (("r1", "` -> `rejected`"), ("r3", "` -> `rejected`"), ("r2", "`rejected` -> `k")):
        line = next(line for line in card.splitlines() if f"`{answered[key]}`" in line)
        assert direction in line
    assert log["rows"]["rejected"]["added"] == 2 and log["rows"]["rejected"]["removed"] == 1


def test_a_push_with_the_judge_shown_on_a_share_is_reported_apart(folder, argilla_server, pushed, tmp_path):
    rg, owner, rows = pushed["rg"], pushed["owner"], rows_of(folder)
    result = skillmix(*push_args(folder, "review-shown", "--n", str(N), "--two-annotators", "0.5",
                                 "--show-judge", "0.25"), server=argilla_server)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 records show the judge's answers (not measured), the others are blind" in result.stdout
    dataset = owner.datasets("review-shown", workspace=WORKSPACE)
    records = {r.id: r for r in dataset.records(with_responses=True, with_suggestions=True)}
    shown = {i for i, r in records.items() if r.metadata["judge_shown"] == "yes"}
    assert len(records) == N and len(shown) == 2  # exactly round(0.25 * 8)
    assert "Some records show the judge's answers pre-filled" in dataset.settings.guidelines
    for record_id, record in records.items():
        row = rows[record_id]
        if record_id not in shown:
            assert list(record.suggestions) == [] and set(record.metadata) == BLIND_METADATA
            continue
        assert record.metadata["annotators"] == 1  # a pre-filled record is never the two-annotator kind
        assert (record.metadata["outcome"], record.metadata["judge_total"]) == (
            row["outcome"],
            sum(row["points"]),
        )
        runs = [p for p, s in zip(row["grader_points"], row["grader_status"], strict=True) if s == "ok"]
        vote = judge_vote(row)
        suggested = {s.question_name: s for s in record.suggestions}
        assert set(suggested) == set(question_names(row["k"]))
        for index, name in enumerate(question_names(row["k"])):
            assert suggested[name].value == ("yes" if vote[index] == 1 else "no")
            assert suggested[name].score == pytest.approx(
                sum(r[index] == vote[index] for r in runs) / len(runs)
            )
    # dave answers everything as the judge voted, except "makes sense" on one shown record
    changed = sorted(shown)[0]
    key = annotator(rg, owner, "dave")
    for record_id, record in records.items():
        row = rows[record_id]
        answers = {
            q: "yes" if v == 1 else "no"
            for q, v in zip(question_names(row["k"]), judge_vote(row), strict=True)
        }
        if record_id == changed:
            answers["makes_sense"] = "no" if answers["makes_sense"] == "yes" else "yes"
        submit(rg, argilla_server.api_url, key, record, answers)
    out = tmp_path / "reviewed"
    pulled = skillmix("review", "pull", "--data", str(folder), "--dataset", "review-shown", "--workspace",
                      WORKSPACE, "--out", str(out), server=argilla_server)  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    review = json.loads((out / "manifest.json").read_text())["review"]
    assert review["mode"] == "mixed" and (review["counts"]["blind"], review["counts"]["shown"]) == (N - 2, 2)
    assert review["shown"] == {"reviewed": 2, "changed": 1}
    figures = review["agreement"]
    assert figures["records"] == N - 2 and figures["judge_human"]["full_marks"]["records"] == N - 2
    assert figures["judge_human"]["makes_sense"]["unweighted"]["raw"] == 1.0  # the change was on a shown one
    assert "2 records showed the judge's answers: decided, not measured (1 changed)" in pulled.stdout
    after = rows_of(out)
    assert after[changed]["review"]["judge_shown"] is True  # still a human decision of the row
    assert all(after[i]["review"]["judge_shown"] is False for i in records if i not in shown)
    card = (out / "README.md").read_text()
    assert f"{N - 2} blind" in card and "2 with the judge's answers\npre-filled" in card


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
    mixed = push_args(folder, DATASET, "--n", str(N), "--two-annotators", SHARE, "--show-judge", "0.5")
    assert "(mode: blind, this push needs shown)" in one_line_error(capsys, mixed, good, monkeypatch)
    share = one_line_error(capsys, push_args(folder, "review-bad", "--show-judge", "2"), good, monkeypatch)
    assert "--show-judge must be a share between 0 and 1, got 2.0" in share
    assert len(records_of(pushed)) == N  # nothing was added
    (tmp_path / "not-a-dataset").mkdir()
    not_data = one_line_error(capsys, push_args(tmp_path / "not-a-dataset"), good, monkeypatch)
    assert "is not a skillmix dataset folder (no manifest.json)" in not_data
    assert pushed["owner"].datasets("review-bad", workspace=WORKSPACE) is None  # never created
    # as a user runs it, a process: one line on the terminal, whatever the SDK's imports and logs would print
    process = run_cli([*CLI, *args], env=argilla_env(argilla_server, ARGILLA_API_KEY="wrong"))
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


# ---- Argilla behind a proxy, or on a private Space ------------------------------------------------------


def test_extra_headers_for_a_private_space():
    from skillmix.review.connect import ReviewError, extra_headers

    token = "hf_private0123456789"
    space = "https://owner-review.hf.space"
    assert extra_headers(space, {"HF_TOKEN": token}) == {"Authorization": f"Bearer {token}"}
    assert extra_headers("https://OWNER-review.HF.SPACE/", {"HF_TOKEN": token}) == {
        "Authorization": f"Bearer {token}"
    }
    assert extra_headers("http://127.0.0.1:6900", {"HF_TOKEN": token}) == {}  # the token goes only to a Space
    assert extra_headers("https://hf.space.example.com", {"HF_TOKEN": token}) == {}
    assert extra_headers(space, {}) == {}
    mine = {"HF_TOKEN": token, "ARGILLA_EXTRA_HEADERS": '{"authorization": "Bearer other", "X-Proxy": "1"}'}
    assert extra_headers(space, mine) == {"authorization": "Bearer other", "X-Proxy": "1"}  # the user's wins
    for bad in ('{"Authorization": ', '["Authorization"]', '{"X-Number": 3}', '{"": "x"}'):
        with pytest.raises(ReviewError, match="ARGILLA_EXTRA_HEADERS") as info:
            extra_headers(space, {"ARGILLA_EXTRA_HEADERS": bad})
        assert "Bearer" not in str(info.value) or "e.g." in str(info.value)
    with pytest.raises(ReviewError) as info:
        extra_headers(space, {"ARGILLA_EXTRA_HEADERS": '{"Authorization": "Bearer secret-value"'})
    assert "secret-value" not in str(info.value)  # a header's value is never printed


class RecordingProxy:
    """A loopback HTTP proxy in front of the Argilla server that records every request's headers."""

    def __init__(self, target: str) -> None:
        import http.server
        import threading

        import httpx

        self.seen: list[dict[str, str]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append({k.lower(): v for k, v in self.headers.items()})
                drop = {"host", "content-length", "connection", "accept-encoding"}
                headers = {k: v for k, v in self.headers.items() if k.lower() not in drop}
                answer = httpx.request(
                    self.command, target + self.path, headers=headers, content=body, timeout=60
                )
                self.send_response(answer.status_code)
                for name, value in answer.headers.items():
                    if name.lower() not in {
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    }:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_extra_headers_reach_the_server(folder, argilla_server, pushed, recwarn):
    bearer = "Bearer hf_proxyToken0123456789"
    with RecordingProxy(argilla_server.api_url) as proxy:
        headers = json.dumps({"Authorization": bearer})
        changes = {"ARGILLA_API_URL": proxy.url, "ARGILLA_EXTRA_HEADERS": headers}
        args = push_args(folder, "review-proxy", "--n", "2", "--two-annotators", "0")
        result = skillmix(*args, server=argilla_server, **changes)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "2 rows sampled, 2 added" in result.stdout and bearer.split()[1] not in result.stdout + result.stderr
    )
    assert not [w for w in recwarn if bearer.split()[1] in str(w.message)]  # a process prints its warnings
    assert len(proxy.seen) >= 3  # connect, workspace, dataset, records ...
    assert all(h.get("authorization") == bearer for h in proxy.seen)
    assert all(h.get("x-argilla-api-key") == argilla_server.api_key for h in proxy.seen)
    assert len(list(pushed["owner"].datasets("review-proxy", workspace=WORKSPACE).records)) == 2
