"""The fake Hub, driven by the real clients: ``huggingface_hub.HfApi`` and ``datasets.load_dataset``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cli_runs import HUB_TOKEN as TOKEN

from skillmix.testing.fake_hub import DEFAULT_TOKEN, DEFAULT_USER, FakeHubServer, HubRequest

huggingface_hub = pytest.importorskip("huggingface_hub")
datasets = pytest.importorskip("datasets")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from huggingface_hub import (  # noqa: E402
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

# huggingface_hub's LFS upload passes a file object as `data=` (its own deprecation warning, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

REPO = f"{DEFAULT_USER}/skill-mix-k3"
PARQUET = "k3/train-00000-of-00001.parquet"
CARD = """---
license: apache-2.0
configs:
- config_name: k3
  data_files:
  - split: train
    path: k3/train-*.parquet
---
# Skill-Mix k=3 (test)
"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 2


@pytest.fixture
def clients(hub, tmp_path, monkeypatch):
    """This process's huggingface_hub and datasets pointed at the test's ``hub`` (conftest), with no file
    system listing cached from another test."""
    hub.configure_clients(monkeypatch, tmp_path / "hf-home")
    HfFileSystem.clear_instance_cache()
    yield hub
    HfFileSystem.clear_instance_cache()


@pytest.fixture
def api(clients) -> HfApi:
    return HfApi(endpoint=clients.endpoint, token=TOKEN)


def rows(version: str) -> dict[str, list]:
    n = 3 if version == "v1" else 4
    return {
        "id": [f"{version}-{i}" for i in range(n)],
        "k": [3] * n,
        "answer": [f"text {version} {i}" for i in range(n)],
    }


def write_folder(folder: Path, version: str) -> Path:
    (folder / "k3").mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(CARD, encoding="utf-8")
    pq.write_table(pa.table(rows(version)), folder / PARQUET)
    (folder / "figures").mkdir(exist_ok=True)
    (folder / "figures" / "accept.png").write_bytes(PNG)
    return folder


def publish(api: HfApi, folder: Path, tag: str, repo_id: str = REPO):
    """What a publisher does: one commit, then a tag on that commit only if the commit succeeded."""
    info = api.upload_folder(
        folder_path=folder, repo_id=repo_id, repo_type="dataset", commit_message=f"Release {tag}"
    )
    api.create_tag(repo_id, tag=tag, revision=info.oid, repo_type="dataset")
    return info


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_upload_tags_download_and_range(hub, api, tmp_path):
    url = api.create_repo(REPO, repo_type="dataset")
    assert url.repo_id == REPO and url.repo_type == "dataset" and url.endpoint == hub.endpoint
    assert api.repo_exists(REPO, repo_type="dataset")
    assert not api.repo_exists(f"{DEFAULT_USER}/other", repo_type="dataset")
    assert api.whoami()["name"] == DEFAULT_USER

    v1 = publish(api, write_folder(tmp_path / "v1", "v1"), "v1.0.0")
    files = api.list_repo_files(REPO, repo_type="dataset")
    assert files == [".gitattributes", "README.md", "figures/accept.png", PARQUET]
    refs = api.list_repo_refs(REPO, repo_type="dataset")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", v1.oid)]
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0.0", v1.oid)]
    # Parquet and PNG went through the LFS batch API and a PUT each; the small README is a regular file.
    assert hub.count(method="PUT", path_contains="/_fake_lfs/", status=200) == 2
    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert tree[PARQUET].lfs is not None and tree["figures/accept.png"].lfs is not None
    assert tree["README.md"].lfs is None and "k3" in tree and "figures" in tree
    top = [e.path for e in api.list_repo_tree(REPO, repo_type="dataset")]
    assert sorted(top) == [".gitattributes", "README.md", "figures", "k3"]
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="k3", repo_type="dataset")] == [PARQUET]
    info = api.dataset_info(REPO, revision="v1.0.0", files_metadata=True)
    assert info.sha == v1.oid and info.private is False
    assert {s.rfilename for s in info.siblings} == set(files)

    old_parquet = (tmp_path / "v1" / PARQUET).read_bytes()
    v2 = publish(api, write_folder(tmp_path / "v2", "v2"), "v1.1.0")
    assert v2.oid != v1.oid
    assert hub.refs(REPO) == {"branches": {"main": v2.oid}, "tags": {"v1.0.0": v1.oid, "v1.1.0": v2.oid}}
    # Unchanged files were skipped by the client (preupload returned their oid): one PUT, the new Parquet.
    assert hub.count(method="PUT", path_contains="/_fake_lfs/", status=200) == 3
    assert hub.uploaded_files(REPO, "v1.0.0")[PARQUET] == old_parquet
    assert hub.uploaded_files(REPO, "v1.1.0")[PARQUET] != old_parquet
    assert hub.commits(REPO)[0]["title"] == "Release v1.1.0"

    path = hf_hub_download(REPO, PARQUET, repo_type="dataset", revision="v1.0.0", token=TOKEN)
    assert Path(path).read_bytes() == old_parquet
    path = hf_hub_download(REPO, PARQUET, repo_type="dataset", revision=v1.oid[:10], token=TOKEN)
    assert Path(path).read_bytes() == old_parquet
    path = api.hf_hub_download(REPO, "figures/accept.png", repo_type="dataset", revision="v1.1.0")
    assert Path(path).read_bytes() == PNG
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt", repo_type="dataset", token=TOKEN)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, PARQUET, repo_type="dataset", revision="v9", token=TOKEN)

    file_url = hf_hub_url(REPO, PARQUET, repo_type="dataset", revision="v1.0.0")
    assert file_url.startswith(hub.endpoint)
    meta = get_hf_file_metadata(file_url, token=TOKEN)
    assert meta.commit_hash == v1.oid and meta.size == len(old_parquet)
    assert meta.etag == hashlib.sha256(old_parquet).hexdigest()  # LFS files: X-Linked-Etag is the sha256
    status, headers, body = get(file_url, {"Range": "bytes=4-19"})
    assert status == 206 and body == old_parquet[4:20]
    assert headers["Content-Range"] == f"bytes 4-19/{len(old_parquet)}"
    assert headers["X-Repo-Commit"] == v1.oid and headers["X-Linked-Size"] == str(len(old_parquet))
    status, _, body = get(file_url, {"Range": "bytes=-4"})
    assert status == 206 and body == old_parquet[-4:] == b"PAR1"
    status, headers, _ = get(file_url, {"Range": f"bytes={len(old_parquet)}-"})
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(old_parquet)}"

    snapshot = Path(snapshot_download(REPO, repo_type="dataset", revision="v1.0.0", token=TOKEN))
    assert (snapshot / PARQUET).read_bytes() == old_parquet
    assert (snapshot / "README.md").read_text(encoding="utf-8") == CARD


def test_load_dataset_at_tags(hub, api, tmp_path):
    api.create_repo(REPO, repo_type="dataset")
    publish(api, write_folder(tmp_path / "v1", "v1"), "v1.0.0")
    publish(api, write_folder(tmp_path / "v2", "v2"), "v1.1.0")

    def load(revision: str, cache: str):
        return datasets.load_dataset(
            REPO, "k3", revision=revision, split="train", token=TOKEN, cache_dir=str(tmp_path / cache)
        )

    assert load("v1.0.0", "c1").to_dict() == rows("v1")
    assert load("v1.1.0", "c2").to_dict() == rows("v2")
    # The main branch too (no dataset-viewer export is consulted: USE_PARQUET_EXPORT is off).
    assert load("main", "c3").to_dict() == rows("v2")
    paths = [r.path for r in hub.requests]
    assert any("/tree/" in p for p in paths) and any("/resolve/" in p for p in paths)
    assert all(r.status < 500 for r in hub.requests)


def test_private_repo_needs_the_token(hub, api, tmp_path):
    api.create_repo(REPO, repo_type="dataset", private=True)
    api.upload_file(
        path_or_fileobj=b"secret rows\n", path_in_repo="data.txt", repo_id=REPO, repo_type="dataset"
    )
    assert hub.is_private(REPO)
    assert api.dataset_info(REPO).private is True

    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError) as err:
        anonymous.dataset_info(REPO)
    assert err.value.response.status_code == 401
    assert not anonymous.repo_exists(REPO, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        anonymous.list_repo_files(REPO, repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        anonymous.hf_hub_download(REPO, "data.txt", repo_type="dataset", cache_dir=tmp_path / "anon")
    status, headers, _ = get(hf_hub_url(REPO, "data.txt", repo_type="dataset"))
    assert status == 401 and headers["X-Error-Code"] == "RepoNotFound"

    path = api.hf_hub_download(REPO, "data.txt", repo_type="dataset", cache_dir=tmp_path / "auth")
    assert Path(path).read_bytes() == b"secret rows\n"

    wrong = HfApi(endpoint=hub.endpoint, token="hf_wrong")
    for write in (
        lambda: wrong.upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=REPO, repo_type="dataset"
        ),
        lambda: wrong.create_tag(REPO, tag="v1", repo_type="dataset"),
        lambda: wrong.create_repo(f"{DEFAULT_USER}/new", repo_type="dataset"),
    ):
        with pytest.raises(HfHubHTTPError) as err:
            write()
        assert err.value.response.status_code == 401
        assert not isinstance(err.value, RepositoryNotFoundError)  # a bad token, not a missing repo
    with pytest.raises(HfHubHTTPError) as err:
        anonymous.create_tag(REPO, tag="v1", repo_type="dataset")
    assert err.value.response.status_code == 401
    assert hub.uploaded_files(REPO).keys() == {".gitattributes", "data.txt"}
    assert hub.refs(REPO)["tags"] == {}

    # Public repos are readable anonymously; a missing repo is 404 for an authenticated caller.
    api.create_repo(f"{DEFAULT_USER}/public", repo_type="dataset")
    assert anonymous.list_repo_files(f"{DEFAULT_USER}/public", repo_type="dataset") == [".gitattributes"]
    with pytest.raises(RepositoryNotFoundError) as err:
        api.dataset_info(f"{DEFAULT_USER}/missing")
    assert err.value.response.status_code == 404
    api.update_repo_settings(REPO, repo_type="dataset", private=False)
    assert anonymous.list_repo_files(REPO, repo_type="dataset") == [".gitattributes", "data.txt"]


def test_failed_commit_changes_nothing_and_leaves_no_tag(hub, api, tmp_path):
    api.create_repo(REPO, repo_type="dataset")
    v1 = publish(api, write_folder(tmp_path / "v1", "v1"), "v1.0.0")
    before = hub.uploaded_files(REPO)

    hub.fail_next("/commit/", status=500)
    with pytest.raises(HfHubHTTPError) as err:
        publish(api, write_folder(tmp_path / "v2", "v2"), "v1.1.0")
    assert err.value.response.status_code == 500
    assert hub.refs(REPO) == {"branches": {"main": v1.oid}, "tags": {"v1.0.0": v1.oid}}
    assert hub.uploaded_files(REPO) == before
    assert api.list_repo_files(REPO, repo_type="dataset") == sorted(before)
    assert [t.name for t in api.list_repo_refs(REPO, repo_type="dataset").tags] == ["v1.0.0"]
    assert HubRequest("POST", f"/api/datasets/{REPO}/commit/main", 500) in hub.requests
    assert hub.count(path_contains="/tag/") == 1  # only the v1.0.0 tag was ever requested

    # The fault was used up: the same release now goes through.
    v2 = publish(api, tmp_path / "v2", "v1.1.0")
    assert hub.refs(REPO)["tags"] == {"v1.0.0": v1.oid, "v1.1.0": v2.oid}


def test_existing_tag_is_a_conflict(hub, api):
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO, repo_type="dataset")
    assert err.value.response.status_code == 409
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)

    first = api.upload_file(path_or_fileobj=b"a\n", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    api.create_tag(REPO, tag="v1.0.0", repo_type="dataset")
    second = api.upload_file(path_or_fileobj=b"b\n", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(REPO, tag="v1.0.0", revision=second.oid, repo_type="dataset")
    assert err.value.response.status_code == 409
    api.create_tag(REPO, tag="v1.0.0", revision=second.oid, repo_type="dataset", exist_ok=True)
    assert hub.refs(REPO)["tags"] == {"v1.0.0": first.oid}  # unchanged

    with pytest.raises(RevisionNotFoundError):
        api.create_tag(REPO, tag="v2", revision="no-such-branch", repo_type="dataset")
    api.delete_tag(REPO, tag="v1.0.0", repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(REPO, tag="v1.0.0", repo_type="dataset")
    api.create_tag(REPO, tag="v1.0.0", revision=second.oid, repo_type="dataset")
    assert hub.refs(REPO)["tags"] == {"v1.0.0": second.oid}


def test_datasets_push_to_hub_round_trip(hub, clients, tmp_path):
    data = datasets.Dataset.from_dict(rows("v1"))
    data.push_to_hub(REPO, config_name="k3", token=TOKEN, private=True)
    assert hub.is_private(REPO)
    files = hub.uploaded_files(REPO)
    assert sorted(files) == [".gitattributes", "README.md", PARQUET]
    assert "config_name: k3" in files["README.md"].decode()
    loaded = datasets.load_dataset(REPO, "k3", split="train", token=TOKEN, cache_dir=str(tmp_path / "c"))
    assert loaded.to_dict() == rows("v1")


def test_commit_operations_parent_commit_and_pagination(tmp_path, monkeypatch):
    with FakeHubServer(token=TOKEN, tree_page_size=2, lfs_threshold=64) as hub:
        hub.configure_clients(monkeypatch, tmp_path / "hf-home")
        api = HfApi(endpoint=hub.endpoint, token=TOKEN)
        api.create_repo("skillmix-tester/model")  # a model repo: no prefix in the URLs
        ops = [CommitOperationAdd(f"shard/{i}.txt", f"row {i}\n".encode()) for i in range(5)]
        ops.append(CommitOperationAdd("big.txt", b"x" * 100))  # over lfs_threshold
        first = api.create_commit("skillmix-tester/model", ops, commit_message="add")
        assert hub.uploaded_files("skillmix-tester/model", repo_type="model")["big.txt"] == b"x" * 100

        # Pagination: 2 entries a page, followed through the Link header.
        listed = [f.path for f in api.list_repo_tree("skillmix-tester/model", "shard")]
        assert listed == [f"shard/{i}.txt" for i in range(5)]
        assert hub.count(path_contains="/tree/main/shard") == 3
        assert len(api.list_repo_files("skillmix-tester/model")) == 7

        # parent_commit: a stale parent is refused (412) and applies nothing.
        second = api.create_commit(
            "skillmix-tester/model",
            [CommitOperationDelete("shard/"), CommitOperationAdd("notes.txt", b"n\n")],
            commit_message="replace shards",
            parent_commit=first.oid,
        )
        with pytest.raises(HfHubHTTPError) as err:
            api.create_commit(
                "skillmix-tester/model",
                [CommitOperationDelete("notes.txt")],
                commit_message="stale",
                parent_commit=first.oid,
            )
        assert err.value.response.status_code == 412
        with pytest.raises(EntryNotFoundError):
            api.create_commit(
                "skillmix-tester/model", [CommitOperationDelete("nope.txt")], commit_message="x"
            )
        assert api.list_repo_files("skillmix-tester/model") == [".gitattributes", "big.txt", "notes.txt"]
        assert hub.refs("skillmix-tester/model", repo_type="model")["branches"] == {"main": second.oid}
        old = api.list_repo_files("skillmix-tester/model", revision=first.oid)
        assert "shard/4.txt" in old

        # Branches and pull requests.
        api.create_branch("skillmix-tester/model", branch="dev", revision=first.oid)
        api.upload_file(
            path_or_fileobj=b"d\n", path_in_repo="dev.txt", repo_id="skillmix-tester/model", revision="dev"
        )
        assert "dev.txt" in hub.uploaded_files("skillmix-tester/model", "dev", repo_type="model")
        pr = api.upload_file(
            path_or_fileobj=b"p\n", path_in_repo="pr.txt", repo_id="skillmix-tester/model", create_pr=True
        )
        assert pr.pr_revision == "refs/pr/1"
        assert api.list_repo_files("skillmix-tester/model", revision="refs/pr/1")[-1] == "pr.txt"
        assert "pr.txt" not in api.list_repo_files("skillmix-tester/model")


def test_storage_survives_a_restart_and_the_cli(tmp_path, monkeypatch):
    storage, token = tmp_path / "hub", DEFAULT_TOKEN  # the command line's token, as it starts below
    with FakeHubServer(token=token, storage=storage) as hub:
        hub.configure_clients(monkeypatch, tmp_path / "home1")
        api = HfApi(endpoint=hub.endpoint, token=token)
        api.create_repo(REPO, repo_type="dataset", private=True)
        info = api.upload_file(path_or_fileobj=PNG, path_in_repo="a.png", repo_id=REPO, repo_type="dataset")
        api.create_tag(REPO, tag="v1", repo_type="dataset")

    proc = subprocess.Popen(
        [sys.executable, "-m", "skillmix.testing.fake_hub", "--port", "0", "--storage", str(storage)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line[0] == "ENDPOINT"
        endpoint = line[1]
        status, headers, body = get(
            f"{endpoint}/datasets/{REPO}/resolve/v1/a.png", {"Authorization": f"Bearer {token}"}
        )
        assert status == 200 and body == PNG and headers["X-Repo-Commit"] == info.oid
        status, _, body = get(f"{endpoint}/api/datasets/{REPO}/refs", {"Authorization": f"Bearer {token}"})
        assert json.loads(body)["tags"] == [{"name": "v1", "ref": "refs/tags/v1", "targetCommit": info.oid}]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert json.loads(proc.stderr.read().strip().splitlines()[-1])["requests"] == 2
