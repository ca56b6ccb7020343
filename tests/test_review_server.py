"""The local Argilla server (argilla-server 2.8.0 + SQLite + Redis + the SQL search engine), for real.

The server is started once per session by the ``argilla_server`` fixture (tests/argilla_fixtures.py); the
Argilla SDK 2.8.0 creates a workspace, an annotator and a review dataset, logs records with metadata and
suggestions, the annotator answers through the API with their own key, and the owner lists and filters the
records by status, metadata, suggestion and text. Headless Chromium (the system's, driven by Playwright)
signs in and checks that the annotation page renders a record's fields and questions. Without redis-server,
chromium, Playwright or the SDK these tests are skipped with the reason (failed under
``SKILLMIX_REQUIRE_SERVERS=1``).
"""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
import time

import pytest

from skillmix.argilla_local import sqlquery, sqlsearch
from skillmix.argilla_local.server import ArgillaServer, ArgillaServerError, http_get, owner_credentials

pytest_plugins = ["argilla_fixtures"]
pytestmark = [  # warnings of the SDK itself
    pytest.mark.filterwarnings("ignore:Support for class-based `config` is deprecated"),
    pytest.mark.filterwarnings("ignore:`user_id` not provided"),
]

YES_NO = ["yes", "no"]
QUESTIONS = {"skill_1": "Correctly illustrates metaphor", "on_topic": "Pertains to Sewing"}
ROWS = [  # id, answer, k, outcome, judge_total, judge says on skill_1
    ("row-0", "The needle was a silver fish diving through the linen sea.", 2, "kept", 5.0, "yes"),
    ("row-1", "A lighthouse of thread guided the hem home.", 3, "kept", 6.0, "yes"),
    ("row-2", "Sewing is nice and I like it a lot.", 2, "rejected", 3.0, "no"),
    ("row-3", "Her stitches marched like soldiers across the seam.", 3, "rejected", 4.0, "yes"),
    ("row-4", "The thimble, a tiny helmet, braved every prick.", 4, "kept", 7.0, "yes"),
    ("row-5", "Buttons are round, like a café's saucers.", 2, "rejected", 2.0, "no"),
]


# ---- without a server -----------------------------------------------------------------------------------


def test_the_modules_run_by_argilla_server_import_without_it():
    modules = ", ".join(f"skillmix.argilla_local.{m}" for m in ("sqlsearch", "argilla_process", "service"))
    code = f"import sys, {modules}; print('argilla_server' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert importlib.import_module("skillmix.argilla_local.sqlsearch").ENGINE_NAME == "skillmix-sql"


def test_sql_helpers():
    assert sqlquery.json_path('k "x"') == '$."k \\"x\\""'
    assert sqlquery.to_datetime("2024-05-01T10:00:00Z").isoformat() == "2024-05-01T10:00:00"
    assert sqlquery.to_datetime(0).isoformat() == "1970-01-01T00:00:00"
    assert sqlsearch.user_order("u1", "r") != sqlsearch.user_order("u2", "r")
    assert sqlsearch.cosine([1, 0], [1, 0]) == pytest.approx(1.0) and sqlsearch.cosine([0, 0], [1, 0]) == 0.0


def test_owner_credentials_are_made_once_and_private(tmp_path):
    owner = owner_credentials(tmp_path / "owner.json")
    assert owner_credentials(tmp_path / "owner.json") == owner and len(owner["api_key"]) > 30
    assert stat.S_IMODE(os.stat(tmp_path / "owner.json").st_mode) == 0o600


def test_a_missing_redis_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr("shutil.which", lambda name: None)
    one_line = r"^redis-server is not installed \(apt-get install redis-server\)$"
    with pytest.raises(ArgillaServerError, match=one_line):
        ArgillaServer(tmp_path).start()


def test_the_service_commands_without_a_server(tmp_path):
    def service(*args):
        argv = [sys.executable, "-m", "skillmix.argilla_local.service", *args, "--data", str(tmp_path)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    status, stop = service("status"), service("stop")
    assert (status.returncode, status.stdout, status.stderr) == (1, "not running\n", "")
    assert (stop.returncode, stop.stdout, stop.stderr) == (0, "", "No Argilla is running.\n")


# ---- against the server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def review(argilla_server, argilla_sdk):
    """A workspace, an annotator and a published review dataset with six records (created once)."""
    rg = argilla_sdk
    owner = rg.Argilla(api_url=argilla_server.api_url, api_key=argilla_server.api_key)
    workspace = rg.Workspace(name="server-test", client=owner).create()
    annotator = rg.User(
        username="server-test-annotator", password="annotator-pw-1", role="annotator", client=owner
    ).create()
    workspace.add_user(annotator)
    key = owner.api.http_client.get(f"/api/v1/users/{annotator.id}").json()["api_key"]  # the SDK hides it
    settings = rg.Settings(
        guidelines="Answer each rubric item for the text in **answer**.",
        fields=[rg.TextField(name="topic"), rg.TextField(name="skills"), rg.TextField(name="answer")],
        questions=[
            *(rg.LabelQuestion(name=name, title=title, labels=YES_NO) for name, title in QUESTIONS.items()),
            rg.TextQuestion(name="comment", title="Comment", required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty(name="outcome", options=["kept", "rejected"]),
            rg.IntegerMetadataProperty(name="k"),
            rg.FloatMetadataProperty(name="judge_total"),
        ],
        distribution=rg.TaskDistribution(min_submitted=1),
    )
    dataset = rg.Dataset(name="server-test", workspace=workspace, settings=settings, client=owner).create()
    dataset.records.log(make_records(rg))
    return {"rg": rg, "owner": owner, "dataset": dataset, "annotator_key": key}


def make_records(rg) -> list:
    return [
        rg.Record(
            id=row_id,
            fields={"topic": "Sewing", "skills": "metaphor: a figure of speech", "answer": text},
            metadata={"k": k, "outcome": outcome, "judge_total": total},
            suggestions=[
                rg.Suggestion("skill_1", judged, score=2 / 3, agent="judge-model"),
                rg.Suggestion("on_topic", "yes", score=1.0, agent="judge-model"),
            ],
        )
        for row_id, text, k, outcome, total, judged in ROWS
    ]


def ids(records) -> set[str]:
    return {record.id for record in records}


def found(review, *conditions, text=None) -> list:
    """The records the SDK finds with a text query and filter conditions such as ``("status", "==", "x")``."""
    rg = review["rg"]
    query = rg.Query(query=text, filter=rg.Filter(list(conditions)) if conditions else None)
    return list(review["dataset"].records(query=query))


def search(review, *conditions, text=None) -> set[str]:
    return ids(found(review, *conditions, text=text))


def test_records_are_listed_with_fields_metadata_and_suggestions(review, argilla_server):
    records = {record.id: record for record in review["dataset"].records}
    assert set(records) == {row[0] for row in ROWS}
    row = records["row-2"]
    assert row.fields["answer"] == ROWS[2][1]
    assert (row.metadata["outcome"], row.metadata["k"]) == ("rejected", 2)
    suggestion = row.suggestions["skill_1"]
    assert (suggestion.value, suggestion.agent) == ("no", "judge-model")
    assert suggestion.score == pytest.approx(2 / 3)
    print(f"argilla timings: {argilla_server.timings}")


def test_logging_the_same_rows_again_adds_nothing(review):
    review["dataset"].records.log(make_records(review["rg"]))
    assert len(list(review["dataset"].records)) == len(ROWS)


def test_filters_on_metadata_suggestions_and_text(review):
    assert search(review, ("metadata.outcome", "==", "kept")) == {"row-0", "row-1", "row-4"}
    assert search(review, ("metadata.k", ">=", 3)) == {"row-1", "row-3", "row-4"}
    assert search(review, ("metadata.judge_total", "<=", 3.5), ("metadata.k", "==", 2)) == {"row-2", "row-5"}
    assert search(review, ("skill_1.suggestion", "==", "no")) == {"row-2", "row-5"}
    assert search(review, ("skill_1.agent", "==", "judge-model")) == ids(review["dataset"].records)
    assert search(review, text="lighthouse") == search(review, text="LightHouse") == {"row-1"}
    assert search(review, text="café") == {"row-5"} and search(review, text='"silver fish"') == {"row-0"}
    assert search(review, ("metadata.outcome", "in", ["kept", "rejected"]), text="the") >= {"row-0", "row-1"}


def annotator(review):
    return review["rg"].Argilla(api_url=review["owner"].api_url, api_key=review["annotator_key"])


def answer(review, record_ids: list[str], status: str, value: str = "yes") -> None:
    """The annotator, with their own key, answers records (found by the owner: an annotator cannot list)."""
    rg, client = review["rg"], annotator(review)
    me = client.me
    for record in review["dataset"].records:
        if record.id in record_ids:
            given = value if status != "discarded" else None
            values = [rg.Response(question, given, me.id, status) for question in QUESTIONS]
            model = rg.responses.UserResponse(values, _record=record).api_model()
            client.api.records.create_record_response(record._server_id, model)


def test_annotator_responses_drive_status_filters_and_progress(review):
    answer(review, ["row-0", "row-1", "row-2"], "submitted")
    answer(review, ["row-3"], "discarded")
    assert search(review, ("response.status", "==", "submitted")) == {"row-0", "row-1", "row-2"}
    assert search(review, ("response.status", "==", "discarded")) == {"row-3"}
    assert search(review, ("response.status", "==", "pending")) == {"row-4", "row-5"}
    assert search(review, ("status", "==", "completed")) == {"row-0", "row-1", "row-2"}
    assert search(review, ("skill_1.response", "==", "yes")) == {"row-0", "row-1", "row-2"}
    progress = review["dataset"].progress(with_users_distribution=True)
    assert (progress["total"], progress["completed"], progress["pending"]) == (6, 3, 3)
    assert progress["users"]["server-test-annotator"]["completed"]["submitted"] == 3
    first = found(review, ("response.status", "==", "submitted"))[0]
    assert [response.value for response in first.responses["skill_1"]] == ["yes"]


def test_own_queue_and_metadata_metrics_through_the_api(review, argilla_server):
    """What the annotation UI asks: the user's pending queue (/me search), their metrics, metadata metrics."""
    http, dataset_id = annotator(review).api.http_client, review["dataset"].id
    pending = {"filters": {"and": [{"type": "terms", "scope": {"entity": "response", "property": "status"},
                                    "values": ["pending"]}]}}  # fmt: skip
    found = http.post(f"/api/v1/me/datasets/{dataset_id}/records/search", json=pending).json()
    assert found["total"] == 2
    assert {item["record"]["external_id"] for item in found["items"]} == {"row-4", "row-5"}
    assert http.get(f"/api/v1/me/datasets/{dataset_id}/metrics").json()["responses"]["submitted"] == 3
    outcome = review["dataset"].settings.metadata["outcome"]
    metrics = review["owner"].api.http_client.get(f"/api/v1/metadata-properties/{outcome.id}/metrics").json()
    assert {"term": "kept", "count": 3} in metrics["values"] and metrics["total"] == 6
    total = {"entity": "metadata", "metadata_property": "judge_total"}
    owner = review["owner"].api.http_client
    body = {"sort": [{"scope": total, "order": "desc"}]}
    items = owner.post(f"/api/v1/datasets/{dataset_id}/records/search", json=body).json()["items"]
    by_total = [row[0] for row in sorted(ROWS, key=lambda row: -row[4])]
    assert [item["record"]["external_id"] for item in items] == by_total
    assert http_get(f"{argilla_server.api_url}/api/v1/me", api_key="wrong-key")[0] == 401


def test_a_new_distribution_is_applied_by_the_worker(review):
    """Updating the dataset enqueues a job (Redis + rq worker) that recomputes every record's status."""
    dataset = review["dataset"]
    dataset.settings.distribution = review["rg"].TaskDistribution(min_submitted=2)
    dataset.update()
    deadline = time.monotonic() + 60
    while search(review, ("status", "==", "completed")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert search(review, ("status", "==", "completed")) == set()
    dataset.settings.distribution = review["rg"].TaskDistribution(min_submitted=1)
    dataset.update()
    while len(search(review, ("status", "==", "completed"))) < 3 and time.monotonic() < deadline + 60:
        time.sleep(0.5)
    assert search(review, ("status", "==", "completed")) == {"row-0", "row-1", "row-2"}


TEXT = "document.body ? document.body.innerText : ''"  # what the page shows


def test_the_annotation_page_renders_in_chromium(review, argilla_server, signed_in_page, tmp_path):
    """The owner signs in (the UI's ``?auth=`` login) and opens the dataset's annotation page, which shows the
    first record of the owner's queue (row-3, -4 or -5: shuffled per user) with its fields and questions."""
    from playwright.sync_api import Error as PlaywrightError

    page, shot = signed_in_page, tmp_path / "annotation.png"
    answers = [row[1] for row in ROWS]
    shown = " || ".join(f"document.body.innerText.includes({text!r})" for text in answers)
    titles = " && ".join(f"document.body.innerText.includes({title!r})" for title in QUESTIONS.values())
    try:
        annotation = f"{argilla_server.api_url}/dataset/{review['dataset'].id}/annotation-mode"
        page.goto(annotation, wait_until="commit")
        page.wait_for_function(f"document.body && ({shown}) && {titles}", timeout=90_000, polling=250)
    except PlaywrightError as exc:
        page.screenshot(path=shot)
        pytest.fail(f"{exc.message}; at {page.url}: {page.evaluate(TEXT)[:500]!r} ({shot})")
    text = page.evaluate(TEXT)
    png = page.screenshot(path=shot)
    assert sum(row_text in text for row_text in answers) == 1 and "Sewing" in text
    assert all(title in text for title in QUESTIONS.values()) and "Submit" in text
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    if folder := os.environ.get("SKILLMIX_SCREENSHOTS"):
        shot.replace(os.path.join(folder, "annotation.png"))
