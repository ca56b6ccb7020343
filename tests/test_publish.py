"""Versioned Hub releases against a loopback Hub-protocol server, with the real huggingface_hub/datasets.

Every Hub client runs in a subprocess with its environment pointing at the fake Hub (huggingface_hub reads
its endpoint at import time), exactly as a user's shell would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from skillmix.testing.fake_hub import FakeHubServer
from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

TOKEN = "hf_skillmixTestToken0123456789abcdef"
REPO = "skillmix-tester/skill-mix"


def build_dataset(out: Path, n: int, server, *extra: str) -> None:
    cmd = [sys.executable, "-m", "skillmix.cli", "dataset", "--out", str(out), "--k", "1,2", "--n", str(n),
           "--teacher-model", "fake-teacher", "--teacher-base-url", server.base_url,
           "--judge-base-url", server.base_url, *extra]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    """Two builds of the same run: v1 with 6 combinations per k, v2 grown to 10 (same settings)."""
    root = tmp_path_factory.mktemp("data")
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.8)) as server:
        build_dataset(root / "run", 6, server)
        shutil.copytree(root / "run", root / "v1")
        build_dataset(root / "run", 10, server)
        shutil.copytree(root / "run", root / "v2")
    return root


@pytest.fixture
def hub(tmp_path):
    with FakeHubServer(token=TOKEN, storage=tmp_path / "hub") as server:
        yield server


def hub_env(hub, tmp_path, token=TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.endpoint, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf_home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               HF_UPDATE_DOWNLOAD_COUNTS="0")  # fmt: skip
    if token:
        env["HF_TOKEN"] = token
    return env


def skillmix(hub, tmp_path, *args, token=TOKEN):
    cmd = [sys.executable, "-m", "skillmix.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=hub_env(hub, tmp_path, token), timeout=300)


def publish(hub, tmp_path, data, version, *extra):
    return skillmix(hub, tmp_path, "publish", "--repo", REPO, "--version", version, "--data", str(data),
                    "--eval-n", "5", *extra)  # fmt: skip


LOAD = """
import json, sys
from datasets import load_dataset
rows = load_dataset(sys.argv[1], sys.argv[2], split=sys.argv[3], revision=sys.argv[4]).to_list()
print(json.dumps([[r["id"], r.get("answer")] for r in rows]))
"""


def load_remote(hub, tmp_path, config, revision, split="train", token=TOKEN):
    env = hub_env(hub, tmp_path / f"load-{config}-{revision}", token)  # a fresh cache per load
    result = subprocess.run([sys.executable, "-c", LOAD, REPO, config, split, revision],
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def local_rows(folder: Path, config: str):
    rows = pq.read_table(folder / config / "train-00000-of-00001.parquet").to_pylist()
    return [[r["id"], r["answer"]] for r in rows]


def test_release_cycle(hub, tmp_path, datasets_dir):
    v1, v2 = datasets_dir / "v1", datasets_dir / "v2"
    first = publish(hub, tmp_path, v1, "v1.0.0")
    assert first.returncode == 0, first.stderr
    assert "v1.0.0" in hub.refs(REPO)["tags"]
    files = hub.uploaded_files(REPO, revision="v1.0.0")
    expected = ["README.md", "manifest.json", "figures/score_distribution.png"]
    expected += [f"{c}/train-00000-of-00001.parquet" for c in ("k1", "k2", "all")]
    for name in [*expected, "eval-held-out/test-00000-of-00001.parquet"]:
        assert name in files, sorted(files)
    card = files["README.md"].decode()
    assert card.startswith("---\nconfigs:") and "First release." in card and "Leakage audit" in card
    assert "arXiv 2409.19808" in card and "skill-mix" in card

    # exactly the published rows come back, by config and revision
    assert load_remote(hub, tmp_path, "k2", "v1.0.0") == local_rows(v1, "k2")
    eval_rows = load_remote(hub, tmp_path, "eval-held-out", "v1.0.0", split="test")
    assert len(eval_rows) == 4 * 5 and all(answer is None for _, answer in eval_rows)

    # a second release with more rows: the changelog counts them
    second = publish(hub, tmp_path, v2, "v1.1.0")
    assert second.returncode == 0, second.stderr
    manifest = json.loads(hub.uploaded_files(REPO, revision="v1.1.0")["manifest.json"])
    log = manifest["release"]["changelog"]
    assert log["previous_version"] == "v1.0.0" and not log["first_release"]
    old_ids = {i for i, _ in local_rows(v1, "k2")}
    new_ids = {i for i, _ in local_rows(v2, "k2")}
    assert log["rows"]["k2"] == {"added": len(new_ids - old_ids), "removed": len(old_ids - new_ids),
                                 "total": len(new_ids)}  # fmt: skip
    assert log["rows"]["k2"]["added"] > 0
    assert "Against v1.0.0" in hub.uploaded_files(REPO, revision="v1.1.0")["README.md"].decode()
    assert load_remote(hub, tmp_path, "k2", "v1.1.0") == local_rows(v2, "k2")
    assert load_remote(hub, tmp_path, "k2", "v1.0.0") == local_rows(v1, "k2")  # the old release is intact

    # an existing version is refused, unless forced
    again = publish(hub, tmp_path, v2, "v1.0.0")
    assert again.returncode == 2 and "already has a release v1.0.0" in again.stderr
    assert load_remote(hub, tmp_path, "k2", "v1.0.0") == local_rows(v1, "k2")

    # download a release into a folder
    target = tmp_path / "downloaded"
    fetched = skillmix(hub, tmp_path, "download", "--repo", REPO, "--version", "v1.0.0", "--out", str(target))
    assert fetched.returncode == 0, fetched.stderr
    assert (target / "k2" / "train-00000-of-00001.parquet").read_bytes() == files[
        "k2/train-00000-of-00001.parquet"
    ]

    # the token is nowhere: not in any pushed file of any revision, not in the output
    for revision in ("v1.0.0", "v1.1.0"):
        for path, blob in hub.uploaded_files(REPO, revision=revision).items():
            assert TOKEN.encode() not in blob, path
    for result in (first, second, again, fetched):
        assert TOKEN not in result.stdout + result.stderr

    # --force replaces a release: the tag moves to the new commit
    forced = publish(hub, tmp_path, v2, "v1.0.0", "--force")
    assert forced.returncode == 0, forced.stderr
    tags = hub.refs(REPO)["tags"]
    assert set(tags) == {"v1.0.0", "v1.1.0"}
    assert load_remote(hub, tmp_path / "forced", "k2", "v1.0.0") == local_rows(v2, "k2")


def test_broken_commit_leaves_no_tag(hub, tmp_path, datasets_dir):
    assert publish(hub, tmp_path, datasets_dir / "v1", "v1.0.0").returncode == 0
    before = hub.uploaded_files(REPO, revision="main")
    hub.fail_next("/commit/", status=500)
    broken = publish(hub, tmp_path, datasets_dir / "v2", "v1.1.0")
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert "v1.1.0" not in hub.refs(REPO)["tags"]
    assert hub.uploaded_files(REPO, revision="main") == before
    retried = publish(hub, tmp_path, datasets_dir / "v2", "v1.1.0")  # the same command again completes
    assert retried.returncode == 0, retried.stderr
    assert "v1.1.0" in hub.refs(REPO)["tags"]


def test_failed_audit_pushes_nothing(hub, tmp_path, datasets_dir, builtin):
    tampered = tmp_path / "tampered"
    shutil.copytree(datasets_dir / "v1", tampered)
    path = tampered / "k2" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    held_out = builtin.split(0).heldout_skills[0].name
    rows[0]["skills"] = [rows[0]["skills"][0], held_out]
    pq.write_table(type(table).from_pylist(rows, schema=table.schema), path)
    result = publish(hub, tmp_path, tampered, "v1.0.0")
    assert result.returncode == 2
    assert (
        "leakage audit failed" in result.stderr
        and rows[0]["id"] in result.stderr
        and held_out in result.stderr
    )
    assert not [r for r in hub.requests if r[0] == "POST"]  # nothing was created or committed


def test_private_release_needs_the_token(hub, tmp_path, datasets_dir):
    assert publish(hub, tmp_path, datasets_dir / "v1", "v1.0.0", "--private").returncode == 0
    env = hub_env(hub, tmp_path / "anon", token=None)
    before = len(hub.requests)
    anonymous = subprocess.run([sys.executable, "-c", LOAD, REPO, "k1", "train", "v1.0.0"],
                               capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert anonymous.returncode != 0 and anonymous.stdout == ""
    # refused for want of credentials (not a crash, not a missing file): the Hub answered 401 ...
    refused = [r for r in hub.requests[before:] if REPO in r.path]
    assert refused and all(r.status == 401 for r in refused)
    # ... and datasets said so
    assert "DatasetNotFoundError" in anonymous.stderr and "cannot be accessed" in anonymous.stderr
    assert load_remote(hub, tmp_path, "k1", "v1.0.0") == local_rows(datasets_dir / "v1", "k1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "1.0"], "not semantic versioning"),
        (["--version", "v1.0.0", "--data", "/nonexistent"], "not a skillmix dataset folder"),
    ],
)
def test_bad_publish_input(hub, tmp_path, datasets_dir, args, message):
    base = ["publish", "--repo", REPO, "--data", str(datasets_dir / "v1")]
    result = skillmix(hub, tmp_path, *base, *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_token(hub, tmp_path, datasets_dir):
    result = skillmix(hub, tmp_path, "publish", "--repo", REPO, "--version", "v1.0.0", "--data",
                      str(datasets_dir / "v1"), token=None)  # fmt: skip
    assert result.returncode == 2 and "no Hugging Face token" in result.stderr


def test_eval_on_a_dataset_asks_its_release_combinations(hub, tmp_path):
    """A dataset built with --seed 7: `skillmix eval --data` draws with its seeds, split and catalog, so it
    asks exactly the published eval-held-out combinations (not those of its own default seed 0)."""
    data = tmp_path / "seed7"
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.8)) as server:
        build_dataset(data, 3, server, "--seed", "7")
        published = publish(hub, tmp_path, data, "v1.0.0", "--eval-n", "3")
        assert published.returncode == 0, published.stderr[-3000:]
        released = {i for i, _ in load_remote(hub, tmp_path, "eval-held-out", "v1.0.0", split="test")}

        def evaluate(out: Path, *extra: str) -> tuple[set[str], dict]:
            roles = ["--student-model", "fake-teacher", "--student-base-url", server.base_url,
                     "--judge-model", "fake-teacher", "--judge-base-url", server.base_url]  # fmt: skip
            done = skillmix(hub, tmp_path, "eval", "--data", str(data), "--out", str(out), "--setting",
                            "held-out", "--k", "2,3,4,5", "--n", "3", "--generations", "1", *roles,
                            *extra)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
            return {s["combination"] for s in samples}, json.loads((out / "results.json").read_text())

        asked, results = evaluate(tmp_path / "eval")
        other, explicit = evaluate(tmp_path / "eval-seed0", "--seed", "0")
    assert len(released) == 4 * 3 and asked == released  # id for id
    assert results["protocol"]["seed"] == 7 and "the dataset's" in results["protocol"]["seed_source"]
    assert other != released and "not the dataset's (7)" in explicit["protocol"]["seed_source"]
