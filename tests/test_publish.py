"""Versioned Hub releases against a loopback Hub-protocol server, with the real huggingface_hub/datasets.

The commands run in this process (``cli_runs.run_here``) with the environment a user's shell would give
them (``cli_runs.hub_changes``); huggingface_hub and datasets read their endpoint at import time, so the
module's clients are pointed at the fake Hub as well (``hub.configure_clients``), and each command and each
load starts with no cached file-system listing, as a new process would.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from cli_runs import HUB_TOKEN as TOKEN
from cli_runs import dataset_cmd, hub_changes, run_here

from skillmix.testing.fake_openai import FakeOpenAIServer, SkillMixResponder

REPO = "skillmix-tester/skill-mix"
# huggingface_hub's LFS upload passes a file object as `data=` (its own deprecation warning, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


def build(out: Path, n: int, server, *extra: str) -> None:
    result = run_here(dataset_cmd(server, out, "--k", "1,2", "--n", str(n), *extra))
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    """Two builds of the same run: v1 with 6 combinations per k, v2 grown to 10 (same settings)."""
    root = tmp_path_factory.mktemp("data")
    with FakeOpenAIServer(responder=SkillMixResponder(seed=5, accept_rate=0.8)) as server:
        build(root / "run", 6, server)
        shutil.copytree(root / "run", root / "v1")
        build(root / "run", 10, server)
        shutil.copytree(root / "run", root / "v2")
    return root


def no_cached_listings() -> None:
    """Forget the Hub file systems' cached listings (a tag can move between two calls), as a new process."""
    from huggingface_hub import HfFileSystem

    HfFileSystem.clear_instance_cache()


@pytest.fixture(autouse=True)
def clients(hub, tmp_path, monkeypatch):
    """This process's huggingface_hub and datasets pointed at the test's ``hub`` (every test here has one)."""
    hub.configure_clients(monkeypatch, tmp_path / "hf_home")
    no_cached_listings()
    yield
    no_cached_listings()


def skillmix(hub, tmp_path, *args, token=TOKEN):
    no_cached_listings()
    return run_here(list(args), hub_changes(hub, tmp_path / "hf_home", token))


def publish(hub, tmp_path, data, version, *extra):
    return skillmix(hub, tmp_path, "publish", "--repo", REPO, "--version", version, "--data", str(data),
                    "--eval-n", "5", *extra)  # fmt: skip


def load(config, revision, split="train", cache=None, token=TOKEN) -> list:
    """The rows datasets loads from the Hub, with a fresh cache (as a new process with its own home)."""
    from datasets import load_dataset

    no_cached_listings()
    dataset = load_dataset(REPO, config, split=split, revision=revision, cache_dir=str(cache), token=token)
    return [[r["id"], r.get("answer")] for r in dataset.to_list()]


def load_remote(hub, tmp_path, config, revision, split="train", token=TOKEN):
    return load(config, revision, split, tmp_path / f"load-{config}-{revision}", token)  # a fresh cache


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
    from datasets.exceptions import DatasetNotFoundError

    before = len(hub.requests)
    with pytest.raises(DatasetNotFoundError, match="cannot be accessed"):  # datasets says so ...
        load("k1", "v1.0.0", cache=tmp_path / "anon", token=None)  # no HF_TOKEN here, no saved login
    # ... refused for want of credentials (not a crash, not a missing file): the Hub answered 401
    refused = [r for r in hub.requests[before:] if REPO in r.path]
    assert refused and all(r.status == 401 for r in refused)
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
        build(data, 3, server, "--seed", "7")
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
