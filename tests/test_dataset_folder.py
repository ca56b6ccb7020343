"""The dataset folder module: its layout names, the one reader, the schema's writer, and the output folder's
claim (a dataset's and an evaluation's), lock, state checks and whole-folder swap.

The end-to-end cases (a real build interrupted, crashed or given broken files) are in ``test_faults.py``;
these are the same rules, one at a time, on tiny folders written here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skillmix.config import ConfigError
from skillmix.dataset_folder import writer
from skillmix.dataset_folder.layout import (
    DATA_FILE,
    K_CONFIG,
    config_path,
    failures_by_reason,
    is_managed,
    k_configs,
    read_dataset_folder,
)
from skillmix.dataset_folder.schema import SCHEMA, write_configs
from skillmix.dataset_folder.writer import OutputFolder


def row(rid: str, k: int, outcome: str = "kept", **extra) -> dict:
    return {"id": rid, "k": k, "skills": [f"s{i}" for i in range(k)], "topic": "Knots", "outcome": outcome,
            "points": [1] * (k + 3), **extra}  # fmt: skip


def make_folder(path: Path, configs: dict[str, list[dict]], **manifest) -> Path:
    """A dataset folder as a build writes it: the configs' Parquet files and a manifest listing them."""
    written = write_configs(path, configs)
    body = {"skillmix_manifest": 1, "config": {"catalog": "builtin"}, "models": {"judge": {"model": "j-1"}},
            "configs": written, **manifest}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(body))
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    return make_folder(
        tmp_path / "data",
        {
            "k2": [row("b", 2)],
            "k1": [row("a", 1)],
            "surplus": [],
            "rejected": [row("r", 2, "rejected")],
            "failed": [row("f", 1, "failed", status="api_error", failure_reason="round1: HTTP 500")],
        },
    )


# --- the layout ---------------------------------------------------------------------------------------


def test_the_layout_names_one_file_per_config():
    assert DATA_FILE == "train-00000-of-00001.parquet"
    assert config_path("k3") == "k3/train-00000-of-00001.parquet"
    assert k_configs(["failed", "k10", "k2", "all", "k", "k1"]) == ["k1", "k2", "k10"]
    assert K_CONFIG.fullmatch("k3") and not K_CONFIG.fullmatch("k") and not K_CONFIG.fullmatch("kx")
    managed = ["README.md", "manifest.json", "k1", "k12", "surplus", "rejected", "failed"]
    assert all(is_managed(name) for name in managed)
    assert not any(is_managed(name) for name in ["notes.txt", ".skillmix", "k", "kept", "all"])


def test_failures_by_reason_counts_status_and_stage_most_common_first():
    rows = [{"status": "api_error", "failure_reason": "round1: HTTP 500"},
            {"status": "api_error", "failure_reason": "round1: timeout"},
            {"status": "budget", "failure_reason": "round2: cap"},
            {"status": "refused", "failure_reason": None}, {}]  # fmt: skip
    counts = failures_by_reason(rows)
    assert counts == {"api_error: round1": 2, "budget: round2": 1, "refused": 1, "unknown": 1}
    assert next(iter(counts)) == "api_error: round1"


# --- the writer of configs and the reader -------------------------------------------------------------


def test_configs_are_written_in_the_schema_and_read_back(data):
    assert sorted(p.name for p in data.iterdir()) == ["failed", "k1", "k2", "manifest.json", "rejected"]
    assert not (data / "surplus").exists()  # an empty config is left out: datasets cannot load it
    assert pq.read_schema(data / "k1" / DATA_FILE).names == SCHEMA.names
    folder = read_dataset_folder(data)
    assert folder.names == ["k2", "k1", "rejected", "failed"]  # the manifest's order
    assert folder.manifest["configs"]["k1"] == {"path": "k1/train-00000-of-00001.parquet", "rows": 1}
    (read,) = folder.rows("k1")
    assert read["id"] == "a" and read["points"] == [1, 1, 1, 1] and read["review"] is None
    assert set(read) == set(SCHEMA.names)  # a column the row did not have is there, null
    assert {name: len(rows) for name, rows in folder.configs.items()} == {
        "k2": 1, "k1": 1, "rejected": 1, "failed": 1,
    }  # fmt: skip
    assert [r["id"] for r in folder.graded()] == ["b", "a", "r"]  # k configs, then rejected; never failed
    assert folder.judge == "j-1"
    assert folder.catalog().source == "builtin"
    folder.check_files()


def test_rows_are_read_when_asked_for_and_once(data):
    folder = read_dataset_folder(data)
    (data / "k2" / DATA_FILE).write_bytes(b"not parquet")  # a config nobody asks for is not read
    assert [r["id"] for r in folder.rows("k1")] == ["a"]
    (data / "k1" / DATA_FILE).unlink()
    assert folder.rows("k1")[0]["id"] == "a"  # read once
    with pytest.raises(
        ConfigError, match=r"k2/train-00000-of-00001\.parquet is listed in the folder's manifest"
    ):
        folder.rows("k2")
    with pytest.raises(ConfigError, match=r"has no config 'k7' \(it has k2, k1, rejected, failed\)"):
        folder.rows("k7")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (shutil.rmtree, r"is not a skillmix dataset folder \(no such folder\)"),
        (lambda p: (p / "manifest.json").unlink(), r"is not a skillmix dataset folder \(no manifest.json\)"),
        (lambda p: (p / "manifest.json").write_text("{not json"), r"manifest.json does not parse \("),
        (lambda p: (p / "manifest.json").write_text("[1]"), "manifest.json does not hold a JSON object"),
        (
            lambda p: (p / "manifest.json").write_text(
                '{"skillmix_manifest": 1, "config": {}, "configs": {}}'
            ),
            r"is not a skillmix dataset folder \(manifest.json has no models\)",
        ),
    ],
)
def test_what_is_not_a_dataset_folder_is_named(data, damage, message):
    damage(data)
    with pytest.raises(ConfigError, match=message):
        read_dataset_folder(data)


def test_a_listed_file_missing_or_broken_is_named(data):
    (data / "rejected" / DATA_FILE).unlink()
    (data / "k1" / DATA_FILE).write_bytes(b"PAR1 and then nothing")
    folder = read_dataset_folder(data)  # the manifest alone is read here
    with pytest.raises(ConfigError, match=r"does not load \(.*\); move the folder aside"):
        folder.check_files()
    with pytest.raises(
        ConfigError, match=r"config rejected is listed in manifest\.json but rejected/\S+ is missing"
    ):
        folder.rows("rejected")


# --- claiming the output folder -----------------------------------------------------------------------

DATASET = {"k": [2], "n": 4}
EVALUATION = {"student": "s", "judge": "j"}


def claim(path: Path, kind: str, fingerprint: str, config: dict | None = None) -> OutputFolder:
    folder = OutputFolder(path)
    folder.claim(kind, fingerprint, config if config is not None else {})
    folder._lock.close()  # the lock ends with the claim here (in a run, with the process)
    return folder


def record(path: Path) -> dict:
    return json.loads((path / ".skillmix" / "run.json").read_text())


@pytest.mark.parametrize(("kind", "config"), [("dataset", DATASET), ("evaluation", EVALUATION)])
def test_a_new_folder_is_claimed_and_the_same_run_resumes(tmp_path, kind, config):
    out = tmp_path / "out"
    claim(out, kind, "fp-1", config)
    assert record(out) == {"kind": kind, "fingerprint": "fp-1", "config": config}
    (out / ".skillmix" / "cache.sqlite").touch()  # the run's state, and its output, stay for the resume
    (out / "results.json").write_text("{}")
    claim(out, kind, "fp-1", config)
    assert record(out)["fingerprint"] == "fp-1" and (out / "results.json").read_text() == "{}"
    empty = tmp_path / "empty"
    empty.mkdir()
    claim(empty, kind, "fp-2")
    assert record(empty)["kind"] == kind


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dataset", "output folder {out} is not empty and holds no skillmix run"),
        ("evaluation", "output folder {out} is not empty and holds no skillmix evaluation"),
    ],
)
def test_a_folder_of_other_files_is_refused_and_left_as_it_was(tmp_path, kind, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError) as refused:
        claim(out, kind, "fp")
    assert str(refused.value) == message.format(out=out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        claim(tmp_path / "file", kind, "fp")


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("dataset", "output folder {out} holds another run's data (different settings); "
                    "choose another OUT= / --out or remove it"),
        ("evaluation", "output folder {out} holds another evaluation (another student, judge or protocol); "
                       "choose another --out or remove it"),
    ],
)  # fmt: skip
def test_a_folder_of_another_run_of_the_kind_is_refused(tmp_path, kind, message):
    out = tmp_path / "out"
    claim(out, kind, "fp-1", {"first": True})
    with pytest.raises(ConfigError) as refused:
        claim(out, kind, "fp-2")
    assert str(refused.value) == message.format(out=out)
    assert record(out) == {"kind": kind, "fingerprint": "fp-1", "config": {"first": True}}  # untouched


@pytest.mark.parametrize(("held", "kind"), [("dataset", "evaluation"), ("evaluation", "dataset")])
def test_a_folder_of_the_other_kind_is_refused_naming_it(tmp_path, held, kind):
    out = tmp_path / "out"
    claim(out, held, "fp")
    article = "an" if kind == "evaluation" else "a"
    with pytest.raises(
        ConfigError, match=f"holds a skillmix {held}, not {article} {kind}; choose another --out"
    ):
        claim(out, kind, "fp")  # the same fingerprint: still another kind of run
    assert record(out)["kind"] == held


def test_records_of_earlier_versions_are_read_with_their_kind(tmp_path):
    dataset = tmp_path / "dataset"  # run.json without a kind: a dataset's
    (dataset / ".skillmix").mkdir(parents=True)
    (dataset / ".skillmix" / "run.json").write_text(json.dumps({"fingerprint": "fp", "config": {}}))
    with pytest.raises(ConfigError, match="holds a skillmix dataset, not an evaluation"):
        claim(dataset, "evaluation", "fp")
    claim(dataset, "dataset", "fp", DATASET)
    assert record(dataset) == {"kind": "dataset", "fingerprint": "fp", "config": DATASET}
    evaluation = tmp_path / "evaluation"  # .skillmix/eval.json: an evaluation's
    (evaluation / ".skillmix").mkdir(parents=True)
    (evaluation / ".skillmix" / "eval.json").write_text(json.dumps({"fingerprint": "fp"}))
    with pytest.raises(ConfigError, match="holds another evaluation"):
        claim(evaluation, "evaluation", "other")
    claim(evaluation, "evaluation", "fp", EVALUATION)
    assert record(evaluation) == {"kind": "evaluation", "fingerprint": "fp", "config": EVALUATION}


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_an_unparseable_record_is_named_as_each_kind_says(tmp_path, text):
    out = tmp_path / "out"
    claim(out, "dataset", "fp")
    run_file = out / ".skillmix" / "run.json"
    run_file.write_text(text)
    with pytest.raises(ConfigError) as evaluation:
        claim(out, "evaluation", "fp")
    assert str(evaluation.value) == f"{run_file} does not parse; move it aside to start afresh"
    with pytest.raises(ConfigError) as dataset:
        claim(out, "dataset", "fp")
    assert str(dataset.value).startswith(str(run_file)) and "move it aside or restore it" in str(
        dataset.value
    )
    assert run_file.read_text() == text  # nothing is deleted


def test_an_unknown_kind_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError, match="one of dataset, evaluation, not 'training'"):
        OutputFolder(tmp_path / "out").claim("training", "fp", {})
    assert not (tmp_path / "out").exists()


def test_one_run_per_folder_names_the_holder(tmp_path):
    out = tmp_path / "out"
    first = OutputFolder(out)
    first.claim("evaluation", "fp", {})
    with pytest.raises(ConfigError, match=f"is in use by another skillmix run \\(process {os.getpid()}\\)"):
        OutputFolder(out).claim("evaluation", "fp", {})
    first._lock.close()
    claim(out, "evaluation", "fp")
    with pytest.raises(ConfigError, match="holds another evaluation"):
        OutputFolder(out).claim("evaluation", "another", {})
    claim(out, "evaluation", "fp")  # a refused claim let the lock go


def test_broken_state_is_named_before_the_claim_completes(tmp_path, data):
    out = tmp_path / "out"
    claim(out, "evaluation", "fp")
    cache = out / ".skillmix" / "cache.sqlite"
    cache.write_bytes(b"\x13garbage" * 100)
    with pytest.raises(
        ConfigError, match=r"is not a readable request cache .*nothing is deleted by skillmix"
    ):
        claim(out, "evaluation", "fp")
    assert cache.exists()
    (data / ".skillmix").mkdir()
    (data / ".skillmix" / "run.json").write_text(json.dumps({"kind": "dataset", "fingerprint": "fp"}))
    claim(data, "dataset", "fp")  # a finished dataset of this run ...
    (data / "failed" / DATA_FILE).write_bytes(b"broken")
    with pytest.raises(
        ConfigError, match=f"{data / 'failed' / DATA_FILE} is listed in the folder's manifest"
    ):
        claim(data, "dataset", "fp")  # ... whose listed file breaks


# --- the swap -----------------------------------------------------------------------------------------


MANIFEST = json.dumps({"skillmix_manifest": 1, "config": {}, "models": {}, "configs": {}})


def staged(folder: OutputFolder, items: dict[str, str]) -> list[str]:
    """Items in the staging folder, as a build stages them: a file, or a config folder with one file."""
    for name, text in items.items():
        target = folder.work / "staging" / name
        target = target / "x" if K_CONFIG.fullmatch(name) else target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return list(items)


def test_the_swap_replaces_the_managed_items_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    folder = claim(out, "dataset", "fp")
    (out / "k1").mkdir()
    (out / "k1" / "x").write_text("old k1")
    (out / "manifest.json").write_text("old")
    (out / "notes.txt").write_text("mine")
    folder.swap(staged(folder, {"manifest.json": "new", "k2": "new k2"}))
    assert sorted(p.name for p in out.iterdir()) == [".skillmix", "k2", "manifest.json", "notes.txt"]
    assert (out / "manifest.json").read_text() == "new" and (out / "k2" / "x").read_text() == "new k2"
    assert sorted(p.name for p in folder.work.iterdir()) == [
        "lock",
        "run.json",
    ]  # no plan, staging or previous


def test_a_failed_swap_is_rolled_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    folder = claim(out, "dataset", "fp")
    (out / "manifest.json").write_text("old")
    (out / "k1").mkdir()
    (out / "k1" / "x").write_text("old k1")
    real, calls = writer._move, []

    def failing(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(source, target)

    monkeypatch.setattr(writer, "_move", failing)
    with pytest.raises(OSError, match="No space left"):
        folder.swap(staged(folder, {"manifest.json": "new", "k2": "new k2"}))
    assert (out / "manifest.json").read_text() == "old" and (out / "k1" / "x").read_text() == "old k1"
    assert not (out / "k2").exists() and not (folder.work / "swap.json").exists()


def test_a_swap_cut_short_is_finished_by_the_next_claim(tmp_path):
    out = tmp_path / "out"
    folder = claim(out, "dataset", "fp")
    names = staged(folder, {"manifest.json": MANIFEST, "k2": "new k2"})
    (out / "k1").mkdir()
    (folder.work / "previous").mkdir()
    (folder.work / "staging" / "manifest.json").rename(out / "manifest.json")  # moved in before the crash
    (folder.work / "swap.json").write_text(json.dumps({"new": names, "old": ["k1", "manifest.json"]}))
    claim(out, "dataset", "fp")
    assert sorted(p.name for p in out.iterdir()) == [".skillmix", "k2", "manifest.json"]
    assert (out / "manifest.json").read_text() == MANIFEST and (out / "k2" / "x").read_text() == "new k2"
    assert not (folder.work / "swap.json").exists() and not (folder.work / "staging").exists()


def test_the_training_reads_a_local_folder_through_the_reader(tmp_path):
    from skillmix.training.config import DataConfig
    from skillmix.training.data import load_sources

    turns = [{"role": role, "content": f"turn {i}"} for i, role in enumerate(["user", "assistant"] * 2)]
    data = make_folder(tmp_path / "data", {"k1": [row("a", 1, conversation=turns)], "k2": []})
    (data / "k9").mkdir()  # a config the manifest does not list is no config of the folder

    def load(**source):
        return load_sources(DataConfig.model_validate({"datasets": [{"path": str(data), **source}]}))

    (source,) = load(configs=["k1"])
    assert [r["id"] for r in source.rows["k1"]] == ["a"] and source.manifest["models"]["judge"][
        "model"
    ] == "j-1"
    with pytest.raises(ConfigError, match=r"data\.datasets\[0\] \(.*\): no config 'k9' \(it has k1\)"):
        load(configs=["k9"])
    (data / "k1" / DATA_FILE).unlink()
    with pytest.raises(ConfigError, match=r"^data\.datasets\[0\]: .* config k1 is listed in manifest\.json"):
        load(configs=["k1"])
    (data / "manifest.json").unlink()
    with pytest.raises(
        ConfigError, match=r"^data\.datasets\[0\]: .* is not a skillmix dataset folder \(no manifest"
    ):
        load(configs=["k1"])
