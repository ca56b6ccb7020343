"""Fine-tuning end to end on CPU, offline: a tiny Skill-Mix dataset built by the pipeline's own code against
the fake OpenAI server, the smoke recipe trained through the command ``make train`` runs, the checkpoint
and its card pushed to the loopback Hub and loaded back with ``from_pretrained``; bad input and a poisoned
dataset stopped before training, with nothing written.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from cli_runs import HUB_TOKEN, cli_env, hub_changes

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "training" / "recipes" / "tiny" / "smoke.yaml"
MODEL_REPO = "skillmix-tester/tiny-student"
DATA_REPO = "skillmix-tester/skill-mix"


@pytest.fixture(scope="module")
def dataset(build_dataset) -> Path:
    """D(1,2,3) with a few kept rows per k, made by `skillmix dataset` against the fake teacher and judge."""
    return build_dataset("1,2,3", 4, 7, 0.9)


def make_train_command(**variables: str) -> list[str]:
    """The command `make train` runs (from `make -n`), with this test's interpreter."""
    assigns = [f"{k}={v}" for k, v in variables.items()] + [f"BIN={Path(sys.executable).parent}"]
    dry = subprocess.run(["make", "--no-print-directory", "-n", "train", *assigns], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    (line,) = [line for line in dry.stdout.splitlines() if "-m skillmix.training " in line]
    return shlex.split(line)


def run_main(argv: list[str], capsys) -> tuple[int, list[str]]:
    from skillmix.training.cli import main

    capsys.readouterr()  # what the set-up printed
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


def load_back(hub, monkeypatch, home: Path, local: Path) -> dict:
    """The pushed model as a user loads it from the Hub (a fresh cache in ``home``): the same weights as the
    local folder's, a generation through its chat template, and the checkpoints branch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub.configure_clients(monkeypatch, home)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    model = AutoModelForCausalLM.from_pretrained(MODEL_REPO)
    tokenizer = AutoTokenizer.from_pretrained(MODEL_REPO)
    mine = AutoModelForCausalLM.from_pretrained(local)
    pairs = zip(model.state_dict().values(), mine.state_dict().values(), strict=True)
    same = all(torch.equal(a, b) for a, b in pairs)
    branch = AutoModelForCausalLM.from_pretrained(MODEL_REPO, revision="checkpoints")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Knots?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return {"same": same, "new_tokens": out.shape[1] - ids.shape[1], "params": model.num_parameters(),
            "branch_params": branch.num_parameters()}  # fmt: skip


def eval_results() -> list[dict]:
    """The model-index results `skillmix eval --push-results` writes into a card (its own function)."""
    from skillmix.evaluation.hub import model_index_results

    mean = {"mean": 0.25, "stderr": 0.05, "ci_low": 0.15, "ci_high": 0.35}
    results = {"run_id": "r1", "judge": {"model": "gpt-4o"}, "protocol": {"generations": 3, "grader_runs": 3},
               "results": [{"k": 3, "setting": "held-out", "n": 100, "full_marks": mean, "all_skills": mean,
                            "skill_fraction": mean}]}  # fmt: skip
    return model_index_results(results)


RESULTS = eval_results()


def seed_model_repo(hub, monkeypatch, home: Path) -> None:
    """The model repo exists with an earlier card that holds evaluation results."""
    from huggingface_hub import HfApi

    hub.configure_clients(monkeypatch, home)
    api = HfApi(endpoint=hub.endpoint, token=HUB_TOKEN)
    api.create_repo(MODEL_REPO)
    header = yaml.safe_dump({"model-index": [{"name": "tiny-student", "results": RESULTS}]})
    api.upload_file(path_or_fileobj=f"---\n{header}---\nold\n".encode(), path_in_repo="README.md",
                    repo_id=MODEL_REPO)  # fmt: skip


def check_pushed(hub, dataset: Path) -> dict[str, bytes]:
    """The model, tokenizer, card and loss curve on main; checkpoints on their branch; no optimizer state."""
    files = hub.uploaded_files(MODEL_REPO, repo_type="model")
    for name in ("README.md", "config.json", "model.safetensors", "tokenizer.json", "loss.png"):
        assert name in files, sorted(files)
    assert not [p for p in files if p.startswith("checkpoint-") or p.endswith((".pt", ".pth", ".bin"))]
    card = files["README.md"].decode()
    assert yaml.safe_load(card.split("---")[1])["model-index"][0]["results"] == RESULTS  # kept ...
    assert "Ratio of Full Marks | 0.25" in card  # ... and shown
    expected = [str(dataset), "k1 (", "k3 (", "constant_with_warmup", "![training loss](loss.png)"]
    expected += ["wall time", "CPU", "arXiv 2409.19808", "@inproceedings{zhao2024skillcomposition"]
    assert [text for text in expected if text not in card] == []
    assert "model.safetensors" in hub.uploaded_files(MODEL_REPO, revision="checkpoints", repo_type="model")
    titles = [c["title"] for c in hub.commits(MODEL_REPO, "checkpoints", repo_type="model")]
    assert titles[:2] == ["checkpoint-10", "checkpoint-5"]
    return files


def test_smoke_recipe_trains_through_make_and_pushes_a_loadable_model(
    dataset, hub, tmp_path, monkeypatch, capsys
):
    seed_model_repo(hub, monkeypatch, tmp_path / "hf-test")
    out = tmp_path / "run"
    cmd = make_train_command(RECIPE=str(SMOKE), DATA=str(dataset), OUT=str(out))
    assert cmd[1:] == ["-m", "skillmix.training", "--config", str(SMOKE), "--data", str(dataset),
                       "--output-dir", str(out)]  # fmt: skip
    cmd += ["--push-to-hub", MODEL_REPO, "--checkpoints-branch", "checkpoints", "--save-steps", "5"]
    # a process, as `make train` starts it: the token must reach nothing it prints, from any thread
    env = cli_env({**hub_changes(hub, tmp_path / "hf"), "OMP_NUM_THREADS": "1"})  # a tiny model: 1 thread
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    losses = [loss for _, loss in json.loads((out / "train_losses.json").read_text())]
    assert len(losses) == 10 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3, losses  # it learns
    files = check_pushed(hub, dataset)
    # the token is nowhere: not pushed, not in the output folder, not printed
    blobs = [*files.values(), *(p.read_bytes() for p in out.rglob("*") if p.is_file())]
    assert all(HUB_TOKEN.encode() not in blob for blob in blobs)
    assert HUB_TOKEN not in result.stdout + result.stderr

    loaded = load_back(hub, monkeypatch, tmp_path / "hf-load", out)
    assert loaded["same"] and loaded["new_tokens"] > 0 and loaded["params"] == loaded["branch_params"]

    # the folder holds this run: the same command with other settings is refused, and the folder kept
    before = sorted(p.name for p in out.iterdir())
    code, lines = run_main(["--config", str(SMOKE), "--data", str(dataset), "--output-dir", str(out),
                            "--learning-rate", "0.1"], capsys)  # fmt: skip
    assert code == 2 and lines == [f"skillmix: error: output folder {out} holds a run with other settings; "
                                   "choose another one"]  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == before


def write_recipe(tmp_path: Path, name: str = "recipe.yaml", **changes) -> Path:
    """The smoke recipe with sections updated (``model={...}`` merges into ``model``)."""
    data = yaml.safe_load(SMOKE.read_text())
    for section, values in changes.items():
        data[section] = {**data[section], **values} if isinstance(values, dict) else values
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def assert_clean_error(code: int, lines: list[str], message: str, out: Path) -> None:
    assert code == 2 and len(lines) == 1 and lines[0].startswith("skillmix: error: "), lines
    assert message in lines[0], lines[0]
    assert not out.exists()  # nothing was written: no half-made output folder


def release_on_hub(hub, monkeypatch, home: Path, dataset: Path) -> None:
    """The dataset folder as the dataset repo's release v1.0.0 on the loopback Hub; HF_TOKEN set."""
    from huggingface_hub import HfApi

    hub.configure_clients(monkeypatch, home)
    api = HfApi(endpoint=hub.endpoint, token=HUB_TOKEN)
    api.create_repo(DATA_REPO, repo_type="dataset")
    api.upload_folder(folder_path=str(dataset), repo_id=DATA_REPO, repo_type="dataset",
                      ignore_patterns=[".skillmix/*"])  # fmt: skip
    api.create_tag(DATA_REPO, tag="v1.0.0", repo_type="dataset")
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)


def bad_inputs(tmp_path: Path, dataset: Path) -> list[tuple[list[str], str]]:
    """(arguments after --config, the message they must stop with)."""
    unknown_key = write_recipe(tmp_path, "a.yaml", training={"max_stepz": 3})
    no_config = write_recipe(
        tmp_path, "b.yaml", data={"datasets": [{"path": str(dataset), "configs": ["k5"]}]}
    )
    no_model = write_recipe(
        tmp_path, "c.yaml", model={"name_or_path": "skillmix-tester/no-model", "tiny": None}
    )
    local = [str(SMOKE), "--data", str(dataset)]
    return [
        ([str(unknown_key)], "training.max_stepz: unknown key"),
        ([str(no_config)], "no config 'k5' (it has k1, k2, k3)"),
        ([str(SMOKE), "--data", DATA_REPO], "a Hub dataset must be pinned"),
        ([str(SMOKE), "--data", f"{DATA_REPO}@v9.9.9"], f"the Hub repo {DATA_REPO} has no revision 'v9.9.9'"),
        ([str(no_model), "--data", str(dataset)], "model.name_or_path: cannot load skillmix-tester/no-model"),
        ([*local, "--max-length", "48"], "max_length 48 is shorter than the prompt of row"),
        ([*local, "--push-to-hub", "not-a-repo-id"], "is not a repo id (org/name)"),
        ([*local, "--per-device-train-batch-size", "3"], "effective_batch_size: 2 is not a multiple of"),
    ]


def test_bad_input_is_one_line_before_training_and_writes_nothing(
    dataset, hub, tmp_path, monkeypatch, capsys
):
    release_on_hub(hub, monkeypatch, tmp_path / "hf", dataset)
    out = tmp_path / "never"
    for args, message in bad_inputs(tmp_path, dataset):
        code, lines = run_main(["--config", *args, "--output-dir", str(out)], capsys)
        assert_clean_error(code, lines, message, out)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, lines = run_main(
        ["--config", str(SMOKE), "--data", str(dataset), "--output-dir", str(foreign)], capsys
    )
    assert code == 2 and "is not empty and holds no skillmix run" in lines[0]
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_a_hub_dataset_loads_at_its_pinned_revision(dataset, hub, tmp_path, monkeypatch):
    from skillmix.training.config import DataConfig
    from skillmix.training.data import load_sources

    release_on_hub(hub, monkeypatch, tmp_path / "hf", dataset)
    spec = {
        "datasets": [
            {"path": DATA_REPO, "revision": "v1.0.0", "configs": ["k2", "k3"], "subsample": {"k3": 2}}
        ]
    }
    (source,) = load_sources(DataConfig.model_validate(spec))
    local = pq.read_table(dataset / "k2" / "train-00000-of-00001.parquet").to_pylist()
    assert [r["id"] for r in source.rows["k2"]] == [r["id"] for r in local] and len(source.rows["k3"]) == 2
    assert source.describe()["hub"] and source.describe()["revision"] == "v1.0.0"


def poison(folder: Path) -> dict[str, str]:
    """A held-out skill composed in a k2 row, a k1 row on a held-out topic, a k3 row equal to a prompt of the
    eval-train set drawn without the dataset's exclusion; returns the ids of the rows it changed."""
    from skillmix.catalog import load_catalog
    from skillmix.release.evalsets import build_eval_sets

    catalog = load_catalog()
    split = catalog.split(0)
    seed = json.loads((folder / "manifest.json").read_text())["seeds"]["sampling"]
    eval_train = build_eval_sets(catalog, split, n=100, seed=seed, settings=["train"])["eval-train"]
    target = next(r for r in eval_train if r["k"] == 3)
    changed = {}
    for config in ("k2", "k1", "k3"):
        path = folder / config / "train-00000-of-00001.parquet"
        table = pq.read_table(path)
        rows = table.to_pylist()
        if config == "k2":
            rows[0]["skills"] = [rows[0]["skills"][0], split.heldout_skills[0].name]
        elif config == "k1":
            rows[0]["topic"] = split.heldout_topics[0]
        else:
            rows[0]["skills"], rows[0]["topic"] = list(target["skills"]), target["topic"]
        pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
        changed[config] = rows[0]["id"]
    return changed


def test_leakage_recheck_refuses_a_poisoned_dataset(dataset, tmp_path, capsys):
    poisoned = tmp_path / "poisoned"
    shutil.copytree(dataset, poisoned, ignore=shutil.ignore_patterns(".skillmix"))
    changed = poison(poisoned)
    out = tmp_path / "never"
    recipe = write_recipe(tmp_path, data={"evaluation": {"settings": ["held-out", "train"]}})
    code, lines = run_main(
        ["--config", str(recipe), "--data", str(poisoned), "--output-dir", str(out)], capsys
    )
    assert_clean_error(code, lines, f"leakage re-check of {poisoned} failed, nothing was trained", out)
    for check in ("heldout_skill_in_composition", "heldout_topic_in_training"):
        assert check in lines[0]
    assert changed["k2"] in lines[0] and changed["k1"] in lines[0], (changed, lines[0])
    # the k3 row made equal to an eval-train prompt is now one the dataset drew: the train set the
    # evaluation (and this check) draws leaves it out, so it leaks into nothing (test_eval_exclusion.py)
    assert "evaluation_combination_in_training" not in lines[0] and changed["k3"] not in lines[0]


def test_plain_text_is_mixed_in_and_trained_on_entirely(dataset, tmp_path):
    from skillmix.training.config import build_config
    from skillmix.training.run import prepare

    texts = tmp_path / "plain.jsonl"
    texts.write_text(
        "".join(json.dumps({"text": f"Plain text number {i} about bees."}) + "\n" for i in range(40))
    )
    plain = {"path": str(texts), "ratio": 0.5}
    recipe = write_recipe(tmp_path, data={"plain_text": plain, "datasets": [{"path": str(dataset)}]})
    prepared = prepare(build_config(recipe, {"output_dir": str(tmp_path / "o")}), log=lambda m: None)
    conversations = prepared.skillmix_rows
    assert conversations >= 8 and len(prepared.rows) == conversations + round(0.5 * conversations)
    for row in prepared.rows[conversations:]:
        assert row["labels"] == row["input_ids"] and row["input_ids"][-1] == prepared.tokenizer.eos_token_id
    for row in prepared.rows[:conversations]:
        assert -100 in row["labels"] and any(label != -100 for label in row["labels"])
    assert not (tmp_path / "o").exists()


def test_the_same_command_again_resumes_from_the_last_checkpoint(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--config", str(SMOKE), "--data", str(dataset), "--output-dir", str(out), "--save-steps", "2"]
    code, lines = run_main([*args, "--max-steps", "4"], capsys)
    assert code == 0, lines
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}
    code, lines = run_main([*args, "--max-steps", "6"], capsys)  # more steps: the same run, resumed
    assert code == 0, lines
    assert any(f"resuming from {out / 'checkpoint-4'}" in line for line in lines), lines
    steps = [step for step, _ in json.loads((out / "train_losses.json").read_text())]
    assert steps[-1] == 6 and (out / "checkpoint-6").is_dir()
