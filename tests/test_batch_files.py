"""Batch files for any engine (``--batch-files DIR``): a dataset built through the files and the fake's
offline runner (``vllm run-batch``'s arguments and format) equals the direct one row by row; importing an
output file twice adds nothing; an output file cut short is reported and its missing lines are written
again; failed lines are written again up to --max-retries; the cap holds row by row (a line of no row: its
own worst case); the plan says so; what cannot go to files is refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import run_here

from skillmix.config import ConfigError
from skillmix.llm.cache import RequestCache, request_key
from skillmix.llm.prices import PriceTable, token_bound
from skillmix.pipelines.batch_files import EXIT_CODE, BatchFiles, read_output, run_batch_files, unwritten
from skillmix.testing.fake_openai.run_batch import main as run_batch

MODEL = "fake-teacher"
NOWHERE = "http://127.0.0.1:9/v1"  # a base URL no server answers: batch files ask no server anything


def rows(folder: Path) -> dict[str, dict]:
    """Every row of a dataset folder, whole (its usage and cost columns too), by id."""
    manifest = json.loads((folder / "manifest.json").read_text())
    out = {}
    for info in manifest["configs"].values():
        for row in pq.read_table(folder / info["path"]).to_pylist():
            out[row["id"]] = row
    return out


def run_files(folder: Path, *flags: str) -> list[str]:
    """The fake's offline runner over every input file of ``folder`` without its output; their names."""
    ran = []
    for path in sorted(folder.glob("*.jsonl")):
        out = path.with_name(path.name[: -len(".jsonl")] + ".out.jsonl")
        if path.name.endswith(".out.jsonl") or out.exists():
            continue
        assert run_batch(["-i", str(path), "-o", str(out), "--model", MODEL, *flags]) == 0
        ran.append(path.name)
    return ran


def test_a_dataset_built_through_batch_files_equals_the_direct_one(tmp_path, build_dataset):
    direct = build_dataset("2", 4, 8, 0.6)
    files = tmp_path / "files"
    cmd = ["dataset", "--out", str(tmp_path / "out"), "--teacher-model", MODEL, "--teacher-base-url", NOWHERE,
           "--k", "2", "--n", "4", "--batch-files", str(files)]  # fmt: skip
    codes, ran = [], []
    for _ in range(5):
        result = run_here(cmd)
        codes.append(result.returncode)
        if result.returncode != EXIT_CODE:
            break
        assert f"vllm run-batch -i {files}/" in result.stderr and "--model fake-teacher" in result.stderr
        ran += run_files(files, "--seed", "8", "--accept-rate", "0.6")
    assert codes == [EXIT_CODE] * 3 + [0], result.stderr[-3000:]
    assert ran == ["round1-1.jsonl", "round2-1.jsonl", "grade-1.jsonl"]
    assert rows(tmp_path / "out") == rows(direct)
    assert sorted(rows(direct)) and len(read_output(files / "grade-1.out.jsonl")) == 4 * 3


def test_the_plan_prints_the_batch_files_case(tmp_path):
    # no base URL and no key (run_here unsets OPENAI_API_KEY): a role in files needs neither
    result = run_here(["dataset", "--dry-run", "--teacher-model", MODEL, "--k", "2", "--n", "2",
                       "--batch-files", str(tmp_path / "files")])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        run_here(["dataset", "--dry-run", "--teacher-model", MODEL]).returncode == 2
    )  # direct: it needs one
    assert "batch files: the teacher and judge requests are written to" in result.stderr
    assert f"exit code {EXIT_CODE}" in result.stderr and "priced as direct requests" in result.stderr
    assert "batched: the figures above are at the batch price" not in result.stderr


@pytest.mark.slow  # about 8 s (7.4 s measured): a money edge case
def test_lines_the_cap_cannot_cover_are_not_written_and_their_rows_end_budget(tmp_path):
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"{MODEL}: {{input: 1.0, output: 2.0}}\n")
    files = tmp_path / "files"
    cap = ["--prices", str(prices), "--max-usd", "0.0001"]  # less than one line's worst case
    result = run_here(["dataset", "--out", str(tmp_path / "out"), "--teacher-model", MODEL, "--k", "2",
                       "--n", "2", *cap, "--batch-files", str(files)])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]  # nothing to run elsewhere: the run ends
    assert sorted(p.name for p in files.iterdir()) == ["skillmix-batch-files.json"]
    assert {row["status"] for row in rows(tmp_path / "out").values()} == {"budget"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--teacher-mode", "completion"], "the teacher is in completion mode"),
        (["--max-usd", "1"], "--max-usd needs the price of the teacher model 'fake-teacher'"),
    ],
)
def test_what_cannot_go_to_batch_files_is_refused(tmp_path, flags, message):
    out, batch_files = str(tmp_path / "out"), str(tmp_path / "files")
    result = run_here(["dataset", "--out", out, "--teacher-model", MODEL, "--teacher-base-url", NOWHERE,
                       "--batch-files", batch_files, *flags])  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "files").exists()


def test_the_embedded_model_is_refused_with_batch_files(tmp_path):
    result = run_here(["dataset", "--out", str(tmp_path / "out"), "--batch-files", str(tmp_path / "files")])
    assert result.returncode == 2 and "--batch-files: the embedded model runs here" in result.stderr


# ---------------------------------------------------------------------- the files themselves, no pipeline


def body(i: int, max_tokens: int = 50) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"Say {i}."}], "temperature": 0.7,
            "max_tokens": max_tokens, "seed": 0}  # fmt: skip


def files_of(tmp_path: Path, lines: int, cap: float | None = None, retries: int = 1) -> BatchFiles:
    """A run's cache with ``lines`` wanted requests of the round-1 stage, and its batch files."""
    cache = RequestCache(tmp_path / "work" / "cache.sqlite")
    endpoint = {"model": MODEL, "base_url": NOWHERE, "api_key_env": "OPENAI_API_KEY"}
    for i in range(lines):
        cache.want(request_key(f"{NOWHERE}|{MODEL}", body(i)), endpoint, body(i), 0.0, stage="round1")
    cache.close()
    prices = PriceTable(prices={MODEL: (1.0, 2.0)})
    files = BatchFiles(tmp_path / "work", tmp_path / "files", prices, cap, retries, log=lambda m: None)
    files.claim(tmp_path / "out")
    return files


def states(files: BatchFiles) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in files.cache.batch_lines():
        out.setdefault(line["state"], []).append(line["key"])
    return out


def ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines() if line.strip()]


def test_importing_an_output_file_twice_adds_nothing(tmp_path):
    files = files_of(tmp_path, 5)
    assert files.write() == [("round1-1.jsonl", MODEL, 5)]
    run_files(tmp_path / "files")
    reports: list[str] = []
    files.log = reports.append
    files.import_outputs()
    answered, spent = len(files.cache), files.cache.spent_usd()
    assert answered == 5 and spent > 0 and states(files).keys() == {"answered"}
    shutil.copy(tmp_path / "files" / "round1-1.out.jsonl", tmp_path / "files" / "copy.out.jsonl")
    files.import_outputs()  # the same file again, and a copy of it under another name
    assert (len(files.cache), files.cache.spent_usd()) == (answered, spent)
    assert reports[-1] == "batch files: 0 answers imported, 10 already imported (added nothing)"
    assert files.write() == [] and files.waiting() == []


def test_an_import_stopped_half_way_bills_each_line_once(tmp_path, monkeypatch):
    files = files_of(tmp_path, 4)
    files.write()
    run_files(tmp_path / "files")
    real, calls = files.cache.close_line, []

    def dying(*args, **kwargs):  # Ctrl-C while the third line is being imported
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(files.cache, "close_line", dying)
    with pytest.raises(KeyboardInterrupt):
        files.import_outputs()
    monkeypatch.undo()
    assert len(states(files)["answered"]) == 2 and len(states(files)["written"]) == 2
    files.import_outputs()
    assert states(files).keys() == {"answered"}
    assert files.cache.spend_by_model()[MODEL]["requests"] == 4  # each line billed once, none twice


def test_an_output_file_cut_short_is_reported_and_its_missing_lines_written_again(tmp_path):
    files = files_of(tmp_path, 4)
    files.write()
    run_files(tmp_path / "files")
    out = tmp_path / "files" / "round1-1.out.jsonl"
    whole = out.read_bytes().split(b"\n")
    out.write_bytes(whole[0] + b"\n" + whole[1][:40])  # one line, then a line cut in the middle
    reports: list[str] = []
    files.log = reports.append
    files.import_outputs()
    assert "batch files: 1 answer imported" in reports[0]
    assert "1 bad line: round1-1.out.jsonl line 2: not a JSON line (cut short?)" in reports[0]
    assert "round1-1.out.jsonl lacks 3 lines of round1-1.jsonl" in reports[0]
    missing = ids(tmp_path / "files" / "round1-1.jsonl")[1:]  # the output's order is the input's
    assert files.write() == [("round1-2.jsonl", MODEL, 3)]
    assert sorted(ids(tmp_path / "files" / "round1-2.jsonl")) == sorted(missing)
    assert [name for name, *_ in files.waiting()] == ["round1-2.jsonl"]
    run_files(tmp_path / "files")
    files.import_outputs()
    assert states(files).keys() == {"answered"} and len(files.cache) == 4


def test_shards_of_a_file_are_imported_from_any_output_name(tmp_path):
    files = files_of(tmp_path, 4)
    files.write()
    folder = tmp_path / "files"
    lines = (folder / "round1-1.jsonl").read_text().splitlines(keepends=True)
    for shard, part in enumerate((lines[:2], lines[2:])):  # split -n l/2 -d: two shards on two nodes
        (folder / f"round1-1.shard-0{shard}.jsonl").write_text("".join(part))
    shard = str(folder / "round1-1.shard-00")
    assert run_batch(["-i", shard + ".jsonl", "-o", shard + ".out.jsonl", "--model", MODEL]) == 0
    reports: list[str] = []
    files.log = reports.append
    files.import_outputs()
    assert reports == ["batch files: 2 answers imported"]  # nothing missing: round1-1.out.jsonl is not there
    assert files.waiting() == [("round1-1.jsonl", MODEL, 2)] and files.write() == []
    shard = str(folder / "round1-1.shard-01")
    assert run_batch(["-i", shard + ".jsonl", "-o", shard + ".out.jsonl", "--model", MODEL]) == 0
    files.import_outputs()
    assert states(files).keys() == {"answered"} and files.waiting() == []


def test_failed_lines_are_written_again_up_to_the_retries_and_invalid_ones_are_final(tmp_path):
    files = files_of(tmp_path, 3, retries=1)
    files.write()
    keys = ids(tmp_path / "files" / "round1-1.jsonl")
    lines = [{"custom_id": keys[0], "response": {"status_code": 500, "body": None}, "error": "engine died"},
             {"custom_id": keys[1], "response": {"status_code": 400, "body": None},
              "error": {"error": {"message": "too long", "code": 400}}},
             {"custom_id": keys[2], "response": None,
              "error": {"code": "batch_expired", "message": "expired"}}]  # fmt: skip
    lines.append({"custom_id": keys[0]})  # neither a response nor an error: a bad line, counted as none
    (tmp_path / "files" / "round1-1.out.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    reports: list[str] = []
    files.log = reports.append
    files.import_outputs()
    assert "1 bad line: round1-1.out.jsonl line 4: neither a response nor an error" in reports[0]
    assert sorted(states(files)["wanted"]) == sorted([keys[0], keys[2]])
    assert (
        files.cache.get(keys[1])["status"] == "invalid_request"
        and files.cache.get(keys[1])["error"] == "too long"
    )
    assert files.write() == [("round1-2.jsonl", MODEL, 2)]
    again = [
        {"custom_id": k, "response": {"status_code": 503, "body": None}, "error": "busy"} for k in keys[::2]
    ]
    (tmp_path / "files" / "round1-2.out.jsonl").write_text("".join(json.dumps(x) + "\n" for x in again))
    files.import_outputs()  # the second failure of each: past --max-retries 1
    failed = {line["key"]: line["error"] for line in files.cache.batch_lines("state = 'failed'")}
    assert failed == {keys[0]: "busy (after 2 batch files)", keys[2]: "busy (after 2 batch files)"}
    assert files.write() == []


def test_a_line_of_no_row_reserves_its_own_worst_case_at_the_direct_price(tmp_path):
    one = PriceTable(prices={MODEL: (1.0, 2.0)}).worst_case(MODEL, token_bound(body(0)["messages"]), 50)
    assert one == pytest.approx((1.0 * (6 + 4 + 3) + 2.0 * 50) / 1e6)  # "Say 0.": 6 bytes, at the byte bound
    files = files_of(tmp_path, 5, cap=one * 3.5)
    assert files.write() == [("round1-1.jsonl", MODEL, 3)]
    assert len(states(files)["refused"]) == 2 and files.cache.reserved_usd() <= one * 3.5 + 1e-12
    run_files(tmp_path / "files")
    files.import_outputs()
    assert files.cache.reserved_usd() == pytest.approx(0) and 0 < files.cache.spent_usd() <= one * 3.5


def test_another_runs_folder_is_refused(tmp_path):
    files_of(tmp_path, 1).close()
    other = BatchFiles(tmp_path / "other", tmp_path / "files", PriceTable(), None, 1, log=print)
    with pytest.raises(Exception, match="holds the batch files of another run"):
        other.claim(tmp_path / "out2")


def test_a_run_through_the_batch_api_sends_what_the_files_never_answered(tmp_path):
    files = files_of(tmp_path, 3, cap=1.0)
    files.write()
    assert files.cache.reserved_usd() > 0
    said: list[str] = []
    unwritten(tmp_path / "work", said.append)
    assert states(files).keys() == {"wanted"} and files.cache.reserved_usd() == 0
    folder = (tmp_path / "files").resolve()
    assert said == [f"3 requests written to batch files in {folder} and never imported are sent through the "
                    "batch API instead (outputs put there later are not read)"]  # fmt: skip


def test_batch_files_are_refused_while_batches_are_in_flight_at_a_provider(tmp_path):
    from types import SimpleNamespace

    files = files_of(tmp_path, 2)
    key = files.cache.batch_lines()[0]["key"]
    files.cache.set_lines([key], "submitted", batch_id="batch_1")
    unbatched = SimpleNamespace(batch=False)
    config = SimpleNamespace(batch_files=str(tmp_path / "files"), settings_of=lambda role: unbatched,
                             client=SimpleNamespace(max_usd=None, max_retries=1))  # fmt: skip
    folder = SimpleNamespace(work=tmp_path / "work", path=tmp_path / "out")
    driver = SimpleNamespace(config=config, models=(), folder=folder, prices=PriceTable(), log=print)
    with pytest.raises(
        ConfigError, match=r"has 1 requests in batches at a provider .*\(after skillmix batches cancel"
    ):
        run_batch_files(driver, [])


def test_a_line_holding_unicode_line_separators_goes_through_whole(tmp_path):
    files = files_of(tmp_path, 0)
    endpoint = {"model": MODEL, "base_url": NOWHERE, "api_key_env": "OPENAI_API_KEY"}
    odd = {**body(0), "messages": [{"role": "user", "content": "one\u2028two\u2029three\x85four\rfive"}]}
    files.cache.want("k-odd", endpoint, odd, 0.0, stage="grade")
    assert files.write() == [("grade-1.jsonl", MODEL, 1)]
    run_files(tmp_path / "files")
    files.import_outputs()
    assert files.cache.get("k-odd")["status"] == "ok" and states(files).keys() == {"answered"}


# ---------------------------------------------------------------------- the fake's offline runner


def test_the_offline_runner_writes_vllms_output_format(tmp_path):
    chat = {"method": "POST", "url": "/v1/chat/completions"}
    requests = [
        {"custom_id": "a", **chat, "body": body(1)},
        {"custom_id": "b", **chat, "body": {**body(2), "model": "other"}},
        {
            "custom_id": "c",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": MODEL, "prompt": "x"},
        },
    ]
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in requests))
    assert run_batch(["-i", str(source), "-o", str(out), "--model", MODEL]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == ["a", "b", "c"]  # one file, the input's order
    assert all(set(line) == {"id", "custom_id", "response", "error"} for line in lines)
    answered = lines[0]["response"]
    assert answered["status_code"] == 200 and answered["request_id"].startswith("vllm-batch-")
    assert answered["body"]["object"] == "chat.completion" and answered["body"]["usage"]["prompt_tokens"] > 0
    assert lines[0]["error"] is None
    assert lines[1]["response"] == {**lines[1]["response"], "status_code": 404, "body": None}
    assert "The model `other` does not exist." in json.dumps(lines[1]["error"])
    assert lines[2]["response"]["status_code"] == 400 and "URL /v1/completions was used" in json.dumps(
        lines[2]
    )
    source.write_text(json.dumps(requests[0]) + "\n{not json\n")
    assert run_batch(["-i", str(source), "-o", str(out), "--model", MODEL]) == 1  # as vLLM: the run ends
    assert ids(out) == ["a"]


# ---------------------------------------------------------------------- evaluations, rounds


def until_done(cmd: list[str], files: Path, *runner: str, most: int = 12) -> tuple[list[int], list[str]]:
    """``cmd`` again and again, the fake's runner over the new files between: exit codes, files run."""
    codes, ran = [], []
    for _ in range(most):
        result = run_here(cmd)
        codes.append(result.returncode)
        if result.returncode != EXIT_CODE:
            assert result.returncode == 0, result.stderr[-3000:]
            break
        ran += run_files(files, *runner)
    return codes, ran


@pytest.mark.slow  # about 15 s (14.0 to 18.6 s measured)
def test_an_evaluation_with_its_judge_in_batch_files_and_an_output_cut_short_scores_as_a_direct_one(tmp_path):
    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    def evaluate(out: Path, *extra: str) -> list[str]:
        roles = ["--student-model", MODEL, "--student-base-url", server.base_url, "--judge-model", MODEL,
                 "--judge-base-url", server.base_url]  # fmt: skip
        sizes = ["--k", "2", "--setting", "held-out", "--n", "4", "--generations", "2"]
        return ["eval", *roles, *sizes, "--out", str(out), *extra]

    with FakeOpenAIServer(responder=SkillMixResponder(seed=9, accept_rate=0.5)) as server:
        assert run_here(evaluate(tmp_path / "direct")).returncode == 0
        sent = server.count(path="/v1/chat/completions")
        files = tmp_path / "files"
        cmd = evaluate(tmp_path / "filed", "--judge-batch", "--batch-files", str(files))
        first = run_here(cmd)
        assert first.returncode == EXIT_CODE and "grade-1.jsonl" in first.stderr, first.stderr[-3000:]
        run_files(files, "--seed", "9", "--accept-rate", "0.5")
        out = files / "grade-1.out.jsonl"  # the engine's run stopped: 10 of its 24 lines, the last cut short
        out.write_bytes(b"\n".join(out.read_bytes().split(b"\n")[:10])[:-30])
        second = run_here(cmd)
        assert second.returncode == EXIT_CODE, second.stderr[-3000:]
        assert (
            "batch files: 9 answers imported" in second.stderr
            and "1 bad line: grade-1.out.jsonl line 10" in second.stderr
        )
        assert "grade-1.out.jsonl lacks 15 lines of grade-1.jsonl" in second.stderr
        assert len(ids(files / "grade-2.jsonl")) == 15 and "vllm run-batch -i" in second.stderr
        assert run_files(files, "--seed", "9", "--accept-rate", "0.5") == ["grade-2.jsonl"]
        codes, ran = until_done(cmd, files, "--seed", "9", "--accept-rate", "0.5")
        assert server.count(path="/v1/chat/completions") - sent == 4 * 2 * 2  # the student's rounds alone
    assert codes == [0] and ran == []
    results = [
        json.loads((tmp_path / name / "results.json").read_text())["results"] for name in ("direct", "filed")
    ]
    assert results[0] == results[1]


@pytest.mark.slow  # about 30 s (30 to 68 s measured, on a loaded machine)
def test_target_accepted_rounds_each_get_their_own_files(tmp_path):
    from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

    sizes = ["--k", "2", "--target-accepted", "3"]
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.2)) as server:
        from cli_runs import dataset_cmd

        assert run_here(dataset_cmd(server, tmp_path / "direct", *sizes)).returncode == 0
    files = tmp_path / "files"
    cmd = ["dataset", "--out", str(tmp_path / "out"), "--teacher-model", MODEL, "--teacher-base-url", NOWHERE,
           *sizes, "--batch-files", str(files)]  # fmt: skip
    codes, ran = until_done(cmd, files, "--seed", "5", "--accept-rate", "0.2")
    assert (
        codes[-1] == 0 and "round1-2.jsonl" in ran and "grade-2.jsonl" in ran
    )  # a second round, its own files
    assert rows(tmp_path / "out") == rows(tmp_path / "direct")
    kept = pq.read_table(tmp_path / "out" / json.loads((tmp_path / "out" / "manifest.json").read_text())
                         ["configs"]["k2"]["path"]).num_rows  # fmt: skip
    assert kept == 3


def test_the_experiment_plan_prints_the_batch_files_case(tmp_path, monkeypatch):
    import yaml

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the smoke experiment names its recipes from the repository's root
    data = yaml.safe_load((root / "experiments" / "smoke.yaml").read_text())
    teacher = {"model": MODEL, "base_url": NOWHERE}
    data["dataset"]["settings"].update(teacher=teacher, batch_files=str(tmp_path / "files"))
    (tmp_path / "files.yaml").write_text(yaml.safe_dump(data))
    plan = run_here(
        ["experiment", "run", str(tmp_path / "files.yaml"), "--plan", "--out", str(tmp_path / "runs")]
    )
    assert plan.returncode == 0, plan.stderr[-2000:]
    dataset = next(line for line in plan.stdout.splitlines() if line.split()[0] == "dataset")
    assert f"the teacher/student and judge requests to batch files in {tmp_path / 'files'}" in dataset
    assert f"exit code {EXIT_CODE}" in dataset
    evaluation = [line for line in plan.stdout.splitlines() if line.split()[0].startswith("eval/")]
    assert evaluation and not any("batch files" in line for line in evaluation)  # the dataset's own folder
    assert not (tmp_path / "runs").exists() and not (tmp_path / "files").exists()


@pytest.mark.slow  # about 17 s (15.9 to 17.6 s measured): two capped builds, pass after pass
def test_a_capped_run_finishes_every_row_it_starts_and_a_higher_cap_writes_what_was_refused(tmp_path):
    """The cap per row with batch files, as in batch mode: a row's remaining worst case (all its stages, at
    the direct price) is reserved when its first line is written; the ledger <= cap; a re-run with a
    higher cap writes what earlier runs refused."""
    prices = tmp_path / "prices.yaml"
    prices.write_text(f"{MODEL}: {{input: 0.0, output: 1000.0}}\n")  # a line: $0.12 at worst (120 tokens)
    files, out = tmp_path / "files", tmp_path / "out"
    cmd = ["dataset", "--out", str(out), "--teacher-model", MODEL, "--teacher-base-url", NOWHERE, "--k", "2",
           "--n", "8", "--prices", str(prices), "--teacher-max-tokens", "120", "--judge-max-tokens", "120",
           "--batch-files", str(files)]  # fmt: skip
    cap = 1.5  # a row: 2 teacher lines and 3 grader runs, $0.60 at worst: two rows fit at the start
    codes, _ = until_done([*cmd, "--max-usd", str(cap)], files, "--seed", "3", "--accept-rate", "0.6")
    assert codes[-1] == 0
    found = list(rows(out).values())
    never = [r for r in found if r["status"] == "budget" and r["failure_reason"].startswith("round1:")]
    assert never and len(never) < len(found)  # some rows were never started
    assert all(r["status"] != "budget" for r in found if r not in never)  # every started row finished
    cache = RequestCache(out / ".skillmix" / "cache.sqlite")
    try:
        first = cache.spent_usd()
        assert 0 < first <= cap and json.loads((out / "manifest.json").read_text())[
            "cost_usd"
        ] == pytest.approx(first)
        states = {line["state"] for line in cache.batch_lines()}
        assert states == {"answered", "refused"} and cache.reserved_usd() == 0  # nothing half done or held
    finally:
        cache.close()
    codes, ran = until_done([*cmd, "--max-usd", "100"], files, "--seed", "3", "--accept-rate", "0.6")
    assert codes[-1] == 0 and ran[0].startswith("round1-")  # the refused rows' first lines, written now
    assert all(r["status"] != "budget" for r in rows(out).values())  # what was refused is done now
    cache = RequestCache(out / ".skillmix" / "cache.sqlite")
    try:
        answered = cache.batch_lines("state = 'answered'")
        assert cache.spend_by_model()[MODEL]["requests"] == len(answered) == len(cache.batch_lines())
        assert json.loads((out / "manifest.json").read_text())["cost_usd"] == pytest.approx(cache.spent_usd())
        assert cache.reserved_usd() == 0
    finally:
        cache.close()
