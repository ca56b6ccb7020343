"""A fake Hugging Face Hub on 127.0.0.1 for tests: repos, commits, LFS uploads, tags, downloads, auth.

Tests start it themselves, on a free port, in a background thread, and point the real clients at it::

    with FakeHubServer(token="hf_test_token", storage=tmp_path / "hub") as hub:
        hub.configure_clients(monkeypatch, tmp_path / "hf-home")
        api = HfApi(endpoint=hub.endpoint, token="hf_test_token")
        api.create_repo("skillmix-tester/d", repo_type="dataset")
        api.upload_folder(folder_path=out, repo_id="skillmix-tester/d", repo_type="dataset")
        api.create_tag("skillmix-tester/d", tag="v1.0.0", repo_type="dataset")
        datasets.load_dataset("skillmix-tester/d", "k3", revision="v1.0.0", split="train",
                              token="hf_test_token", cache_dir=str(tmp_path / "ds-cache"))
        hub.uploaded_files("skillmix-tester/d", revision="v1.0.0"), hub.refs("skillmix-tester/d")
        hub.requests, hub.fail_next("/commit/", status=500)

or as a subprocess: ``python -m skillmix.testing.fake_hub --port 0 --storage DIR`` prints
``ENDPOINT http://127.0.0.1:PORT`` on its first stdout line and serves until SIGTERM/SIGINT.

Pointing the clients at the server (the recipe; :meth:`FakeHubServer.configure_clients` applies it with
pytest's ``monkeypatch``). ``huggingface_hub`` 2.4 and ``datasets`` 5.2 read their settings from the
environment *once, at import time*, so setting the environment is not enough once they are imported:

* environment: ``HF_ENDPOINT=hub.endpoint``, ``HF_HUB_DISABLE_XET=1`` (uploads must use the LFS protocol;
  the fake speaks no Xet), ``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_DATASETS_CACHE`` in a temporary folder,
  ``HF_UPDATE_DOWNLOAD_COUNTS=0``, and ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``, ``HF_TOKEN`` and
  ``HUGGING_FACE_HUB_TOKEN`` unset (pass ``token=`` explicitly, or set ``HF_TOKEN`` yourself);
* ``huggingface_hub.constants``: ``ENDPOINT``, ``HUGGINGFACE_CO_URL_TEMPLATE`` (``hf_hub_url`` builds
  download URLs from it; ``endpoint=`` only rewrites URLs that start with ``ENDPOINT``), ``HF_URL_HOSTS``,
  ``HF_HUB_DISABLE_XET``, ``HF_HUB_OFFLINE``, the cache paths (``HF_HOME``, ``HF_HUB_CACHE``, ...) and the
  token paths ``HF_TOKEN_PATH`` / ``HF_STORED_TOKENS_PATH`` (otherwise a token saved by ``hf auth login`` on
  the machine is sent, and this server answers a token it does not know with 401);
* ``datasets.config``: ``HF_ENDPOINT`` and ``HUB_DATASETS_URL`` (``HfApi``/``HfFileSystem`` inside
  ``datasets`` are built with ``endpoint=config.HF_ENDPOINT``), ``HF_HUB_OFFLINE``, the cache paths,
  ``HF_UPDATE_DOWNLOAD_COUNTS=False`` (else every load HEADs an S3 URL) and ``USE_PARQUET_EXPORT=False``
  (else loads of the main branch ask ``datasets-server.<endpoint host>`` for exported infos);
* ``HfApi(endpoint=hub.endpoint, token=...)`` everywhere an API object is built by the test itself, and a
  fresh ``cache_dir`` per ``load_dataset`` call when a test compares revisions.
  ``huggingface_hub.HfFileSystem.clear_instance_cache()`` drops cached file-system listings between tests.

What the server implements (repo types ``model``, ``dataset`` and ``space``, all with the same code; URLs
as ``huggingface_hub`` 2.4 builds them, ``{t}`` being ``models``/``datasets``/``spaces`` and ``{prefix}``
empty/``datasets/``/``spaces/``):

* ``GET /api/whoami-v2``; ``POST /api/repos/create`` (``visibility``/``private``; 409 with the repo ``url``
  when it exists, which ``exist_ok=True`` relies on); ``DELETE /api/repos/delete``; ``POST
  /api/validate-yaml`` (accepts any front matter that is closed by ``---``);
* ``GET /api/{t}/{id}[/revision/{rev}]`` (``sha``, ``private``, ``siblings``; ``blobs=1`` adds sizes and
  LFS info; ``expand`` filters), ``PUT /api/{t}/{id}/settings``, ``GET /api/{t}/{id}/auth-check[/write]``;
* ``GET /api/{t}/{id}/tree/{rev}[/{path}]`` (``recursive``, ``expand`` with ``lastCommit``, cursor
  pagination through a ``Link: <...>; rel="next"`` header, ``tree_page_size`` entries a page),
  ``POST /api/{t}/{id}/paths-info/{rev}`` (form or JSON body), ``GET /api/{t}/{id}/refs``
  (``include_prs``), ``GET /api/{t}/{id}/commits/{rev}``;
* ``POST /api/{t}/{id}/preupload/{rev}``: ``lfs`` for files matching the ``filter=lfs`` patterns of the
  revision's ``.gitattributes`` (a new repo gets one, with ``*.parquet``, ``*.png``, ... as the Hub does),
  for files whose 512-byte sample holds a NUL byte (binary) and for files of ``lfs_threshold`` bytes or
  more (1 KiB by default; the Hub uses 10 MiB); ``regular`` otherwise; ``oid`` of the file already at that
  path (sha256 for LFS, git blob id for regular files) so the client skips unchanged files;
* ``POST /{prefix}{id}.git/info/lfs/objects/batch`` (``upload`` only, ``basic`` transfer): objects already
  stored get no actions; others get an ``upload`` href back to this server (signed, no auth header needed,
  as a pre-signed S3 URL) and a ``verify`` href; ``PUT`` of the bytes is checked against sha256 and size
  (400 otherwise); ``POST .../objects/verify`` answers 404 for an object that was not uploaded;
* ``POST /api/{t}/{id}/commit/{branch}`` (NDJSON: ``header`` with ``summary``, ``description``,
  ``parentCommit``; ``file`` (base64 or utf-8), ``lfsFile``, ``deletedFile``, ``deletedFolder``;
  ``create_pr=1`` opens ``refs/pr/N``). The commit is built on a copy and swapped in at the end, so a
  rejected commit changes nothing: 412 when ``parentCommit`` is not the branch head, 404 ``EntryNotFound``
  when a deleted path does not exist, 422 when an ``lfsFile`` was never uploaded, 400 for a bad path or
  when the revision is not a branch. Each commit is a full snapshot ``path -> blob``; its id is a sha1;
* ``POST /api/{t}/{id}/tag/{rev}`` (409 when the tag exists), ``DELETE /api/{t}/{id}/tag/{tag}``,
  ``POST``/``DELETE /api/{t}/{id}/branch/{branch}`` (409 when it exists);
* ``GET``/``HEAD /{prefix}{id}/resolve/{rev}/{path}`` where ``rev`` is a branch, a tag, ``refs/pr/N``, a
  full commit id or a unique prefix of one: the bytes are served directly (no CDN redirect) with
  ``ETag`` (git blob id, or sha256 for LFS files), ``X-Linked-Etag`` / ``X-Linked-Size`` for LFS files,
  ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges``; a single ``Range`` gets 206 with
  ``Content-Range`` (416 when unsatisfiable). ``snapshot_download`` and ``datasets.load_dataset`` (through
  ``HfFileSystem``) need nothing more.

Errors carry the Hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message`` headers and a ``{"error": ...}`` body, so the client raises its own typed errors.

Authentication. A request whose ``Authorization: Bearer`` token is not ``token`` gets 401 with the Hub's
``Invalid credentials in Authorization header`` (the client raises a plain ``HfHubHTTPError``). Every write
needs the token (401 without it); ``orgs`` (when given) limits writes to the user's and those namespaces
(403 elsewhere). A private repo reads as missing without the token (401 ``RepoNotFound``, as the Hub
answers anonymous callers); public repos are readable anonymously. A missing repo is 404 ``RepoNotFound``
for an authenticated caller, 401 for an anonymous one.

Faults and accounting. :meth:`FakeHubServer.fail_next` makes the next ``count`` requests whose path contains
a substring (and, optionally, whose method matches) fail with a status before anything is read or applied.
Note that ``huggingface_hub`` retries 429/5xx on the requests it sends through ``http_backoff`` (preupload,
LFS batch and upload, tree listing, HEAD of downloads when asked to), but not a commit, a tag or a repo
creation. Every request is recorded in :attr:`FakeHubServer.requests` as ``HubRequest(method, path,
status)`` (``path`` without the query string).

Storage: in memory, or under ``storage`` (``state.json`` plus content-addressed ``blobs/``), written after
every change, so a new server on the same folder serves the same repos. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import fnmatch
import hashlib
import http.server
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = [
    "DEFAULT_GITATTRIBUTES",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "FakeHubServer",
    "HubRequest",
    "main",
]

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USER = "skillmix-tester"

# The patterns the Hub writes into a new repo's .gitattributes (abridged, plus the media types).
_LFS_PATTERN_TEXT = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.lz4 *.mds *.mlmodel *.model "
    "*.msgpack *.npy *.npz *.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors "
    "saved_model/**/* *.tar *.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents* *.mp3 *.ogg *.wav "
    "*.flac *.jpg *.jpeg *.png *.gif *.webp *.mp4 *.webm"
)
_LFS_PATTERNS = tuple(_LFS_PATTERN_TEXT.split())
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in _LFS_PATTERNS
).encode()

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_TRUE = {"1", "true", "yes", "on"}
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class HubRequest(NamedTuple):
    """One request as the server answered it."""

    method: str
    path: str
    status: int


class _HTTPError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() in _TRUE


def _check_path(path: str) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        raise _HTTPError(400, f"Invalid path in commit: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..", ".git") for part in parts):
        raise _HTTPError(400, f"Invalid path in commit: {path!r}")
    return path


@dataclass(frozen=True)
class _File:
    sha256: str  # key of the content in the blob store
    size: int
    oid: str  # git blob id (of the pointer file for LFS files)
    lfs: bool

    def to_json(self) -> list[Any]:
        return [self.sha256, self.size, self.oid, self.lfs]

    @classmethod
    def from_json(cls, value: list[Any]) -> _File:
        return cls(str(value[0]), int(value[1]), str(value[2]), bool(value[3]))


@dataclass
class _Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    date: str
    author: str
    files: dict[str, _File]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parents": self.parents,
            "title": self.title,
            "message": self.message,
            "date": self.date,
            "author": self.author,
            "files": {path: f.to_json() for path, f in self.files.items()},
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> _Commit:
        files = {path: _File.from_json(f) for path, f in value["files"].items()}
        return cls(
            value["id"],
            list(value["parents"]),
            value["title"],
            value["message"],
            value["date"],
            value["author"],
            files,
        )


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    uid: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[int, str] = field(default_factory=dict)
    commits: dict[str, _Commit] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repo_id.split("/", 1)[0]

    def url(self, endpoint: str) -> str:
        return f"{endpoint}/{_URL_PREFIX[self.repo_type]}{self.repo_id}"

    def resolve(self, revision: str | None) -> str | None:
        """The commit id a branch, tag, ``refs/...`` name, commit id or unique id prefix points at."""
        rev = revision or "main"
        if rev.startswith("refs/heads/"):
            return self.branches.get(rev[len("refs/heads/") :])
        if rev.startswith("refs/tags/"):
            return self.tags.get(rev[len("refs/tags/") :])
        match = re.fullmatch(r"refs/pr/(\d+)", rev)
        if match:
            return self.prs.get(int(match[1]))
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if rev in self.commits:
            return rev
        if re.fullmatch(r"[0-9a-f]{5,39}", rev):
            found = [sha for sha in self.commits if sha.startswith(rev)]
            if len(found) == 1:
                return found[0]
        return None

    def history(self, sha: str) -> list[_Commit]:
        """First-parent history from ``sha``, newest first."""
        out: list[_Commit] = []
        current: str | None = sha
        while current is not None:
            commit = self.commits[current]
            out.append(commit)
            current = commit.parents[0] if commit.parents else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_type": self.repo_type,
            "repo_id": self.repo_id,
            "private": self.private,
            "created_at": self.created_at,
            "uid": self.uid,
            "branches": self.branches,
            "tags": self.tags,
            "prs": {str(k): v for k, v in self.prs.items()},
            "commits": [c.to_json() for c in self.commits.values()],
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> _Repo:
        repo = cls(value["repo_type"], value["repo_id"], value["private"], value["created_at"], value["uid"])
        repo.branches = dict(value["branches"])
        repo.tags = dict(value["tags"])
        repo.prs = {int(k): v for k, v in value["prs"].items()}
        repo.commits = {c["id"]: _Commit.from_json(c) for c in value["commits"]}
        return repo


class _BlobStore:
    """Content-addressed bytes, by sha256: a dict, or files under ``root``."""

    def __init__(self, root: Path | None):
        self.root = root
        self._mem: dict[str, bytes] = {}
        self._lock = threading.Lock()
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def _path(self, sha256: str) -> Path:
        assert self.root is not None
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.root is None:
            with self._lock:
                self._mem.setdefault(sha256, data)
            return sha256
        path = self._path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return sha256

    def has(self, sha256: str) -> bool:
        if self.root is None:
            with self._lock:
                return sha256 in self._mem
        return self._path(sha256).is_file()

    def get(self, sha256: str) -> bytes:
        if self.root is None:
            with self._lock:
                return self._mem[sha256]
        return self._path(sha256).read_bytes()

    def size(self, sha256: str) -> int:
        if self.root is None:
            with self._lock:
                return len(self._mem[sha256])
        return self._path(sha256).stat().st_size


@dataclass
class _Fault:
    substring: str
    status: int
    remaining: int
    method: str | None


class FakeHubServer:
    """A Hub-protocol server on 127.0.0.1 (see the module docstring for what it implements).

    Args:
        token: the one valid access token.
        storage: folder to keep repos and blobs in (created; reused when it already holds a state), or
            ``None`` to keep everything in memory.
        user: the token's user name (``whoami``), also the namespace it may write to.
        orgs: organisations the user belongs to (``whoami``). When given, writes are limited to the user's
            and these namespaces (403 elsewhere); when ``None`` (default) any namespace is writable.
        host, port: where to listen (port 0: a free port).
        lfs_threshold: files of at least this many bytes are uploaded as LFS.
        tree_page_size: entries per page of the tree listing (the Hub uses 1000, and 50 with ``expand``).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        storage: str | os.PathLike[str] | None = None,
        *,
        user: str = DEFAULT_USER,
        orgs: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_threshold: int = 1024,
        tree_page_size: int = 1000,
    ):
        self.token = token
        self.user = user
        self.orgs = tuple(orgs) if orgs is not None else None
        self.lfs_threshold = lfs_threshold
        self.tree_page_size = max(1, tree_page_size)
        self.storage = Path(storage) if storage is not None else None
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._requests: list[HubRequest] = []
        self._faults: list[_Fault] = []
        self._upload_grants: dict[str, tuple[str, int]] = {}
        self._blobs = _BlobStore(self.storage / "blobs" if self.storage is not None else None)
        if self.storage is not None:
            self.storage.mkdir(parents=True, exist_ok=True)
            state = self.storage / "state.json"
            if state.is_file():
                data = json.loads(state.read_text(encoding="utf-8"))
                for value in data["repos"]:
                    repo = _Repo.from_json(value)
                    self._repos[(repo.repo_type, repo.repo_id)] = repo
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = int(self._httpd.server_address[1])

    # ------------------------------------------------------------------ lifecycle

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``HF_ENDPOINT`` and ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeHubServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-hub", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()
        self._httpd.close_connections()

    def __enter__(self) -> FakeHubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers

    @property
    def requests(self) -> list[HubRequest]:
        """A copy of the requests answered so far, in order, as ``(method, path, status)``."""
        with self._lock:
            return list(self._requests)

    def fail_next(
        self, path_substring: str, status: int = 500, count: int = 1, *, method: str | None = None
    ) -> None:
        """Answer the next ``count`` requests whose path contains ``path_substring`` (and whose method is
        ``method``, when given) with ``status``, before anything of them is read or applied."""
        with self._lock:
            self._faults.append(_Fault(path_substring, status, count, method.upper() if method else None))

    def uploaded_files(
        self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset"
    ) -> dict[str, bytes]:
        """``{path: bytes}`` of a revision (branch, tag or commit id); KeyError when it does not exist."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"no revision {revision!r} in {repo_type} {repo_id}")
            files = dict(repo.commits[sha].files)
        return {path: self._blobs.get(f.sha256) for path, f in sorted(files.items())}

    def refs(self, repo_id: str, *, repo_type: str = "dataset") -> dict[str, dict[str, str]]:
        """``{"branches": {name: commit}, "tags": {name: commit}}``; KeyError when the repo does not exist."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            return {"branches": dict(repo.branches), "tags": dict(repo.tags)}

    def commits(
        self, repo_id: str, revision: str = "main", *, repo_type: str = "dataset"
    ) -> list[dict[str, Any]]:
        """First-parent history of a revision, newest first: ``id``, ``title``, ``message``, ``paths``."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"no revision {revision!r} in {repo_type} {repo_id}")
            return [
                {"id": c.id, "title": c.title, "message": c.message, "paths": sorted(c.files)}
                for c in repo.history(sha)
            ]

    def repo_exists(self, repo_id: str, *, repo_type: str = "dataset") -> bool:
        with self._lock:
            return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, *, repo_type: str = "dataset") -> bool:
        with self._lock:
            return self._repos[(repo_type, repo_id)].private

    def count(self, *, method: str | None = None, path_contains: str = "", status: int | None = None) -> int:
        """How many recorded requests match."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and path_contains in r.path
            and (status is None or r.status == status)
        )

    def client_env(self, hf_home: str | os.PathLike[str]) -> dict[str, str | None]:
        """Environment for clients started after this (``None``: unset)."""
        home = Path(hf_home)
        return {
            "HF_ENDPOINT": self.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_UPDATE_DOWNLOAD_COUNTS": "0",
            "HF_HUB_OFFLINE": None,
            "HF_DATASETS_OFFLINE": None,
            "TRANSFORMERS_OFFLINE": None,
            "HUGGINGFACE_CO_STAGING": None,
            "HF_TOKEN": None,
            "HUGGING_FACE_HUB_TOKEN": None,
            "HF_TOKEN_PATH": None,
        }

    def client_constants(self, hf_home: str | os.PathLike[str]) -> dict[str, Any]:
        """``{"module.ATTRIBUTE": value}`` for the settings ``huggingface_hub`` and ``datasets`` read at
        import time (see the module docstring)."""
        home = Path(hf_home)
        hub_cache = str(home / "hub")
        datasets_cache = home / "datasets"
        hosts = frozenset({"hf.co", "huggingface.co", "hub-ci.huggingface.co", self.host})
        return {
            "huggingface_hub.constants.ENDPOINT": self.endpoint,
            "huggingface_hub.constants.HUGGINGFACE_CO_URL_TEMPLATE": (
                self.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
            ),
            "huggingface_hub.constants.HF_URL_HOSTS": hosts,
            "huggingface_hub.constants.HF_HUB_DISABLE_XET": True,
            "huggingface_hub.constants.HF_HUB_OFFLINE": False,
            "huggingface_hub.constants.HF_HUB_DISABLE_TELEMETRY": True,
            "huggingface_hub.constants.HF_HOME": str(home),
            "huggingface_hub.constants.HF_HUB_CACHE": hub_cache,
            "huggingface_hub.constants.HUGGINGFACE_HUB_CACHE": hub_cache,
            "huggingface_hub.constants.HF_ASSETS_CACHE": str(home / "assets"),
            "huggingface_hub.constants.HF_XET_CACHE": str(home / "xet"),
            "huggingface_hub.constants.HF_TOKEN_PATH": str(home / "token"),
            "huggingface_hub.constants.HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
            "datasets.config.HF_ENDPOINT": self.endpoint,
            "datasets.config.HUB_DATASETS_URL": self.endpoint
            + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "datasets.config.HF_HUB_OFFLINE": False,
            "datasets.config.HF_DATASETS_OFFLINE": False,
            "datasets.config.HF_UPDATE_DOWNLOAD_COUNTS": False,
            "datasets.config.USE_PARQUET_EXPORT": False,
            "datasets.config.HF_CACHE_HOME": str(home),
            "datasets.config.HF_DATASETS_CACHE": datasets_cache,
            "datasets.config.HF_MODULES_CACHE": home / "modules",
            "datasets.config.DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
            "datasets.config.EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
        }

    def configure_clients(self, monkeypatch: Any, hf_home: str | os.PathLike[str]) -> None:
        """Apply :meth:`client_env` and :meth:`client_constants` with pytest's ``monkeypatch`` (undone at the
        end of the test). Packages that are not installed are skipped."""
        for name, value in self.client_env(hf_home).items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        for target, value in self.client_constants(hf_home).items():
            if importlib.util.find_spec(target.split(".", 1)[0]) is not None:
                monkeypatch.setattr(target, value, raising=False)

    # ------------------------------------------------------------------ state

    def _save(self) -> None:
        """Write the state (call with the lock held)."""
        if self.storage is None:
            return
        data = {"version": 1, "repos": [repo.to_json() for repo in self._repos.values()]}
        fd, tmp = tempfile.mkstemp(dir=self.storage, prefix=".state-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.storage / "state.json")

    def _file_entry(self, data: bytes, lfs: bool) -> _File:
        sha256 = self._blobs.put(data)
        oid = _git_blob_oid(_lfs_pointer(sha256, len(data))) if lfs else _git_blob_oid(data)
        return _File(sha256, len(data), oid, lfs)

    def _lfs_entry(self, sha256: str, size: int | None) -> _File:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256 or "") or not self._blobs.has(sha256):
            raise _HTTPError(422, f"LFS object {sha256} was not uploaded (use the LFS batch API first)")
        stored = self._blobs.size(sha256)
        if size is not None and int(size) != stored:
            raise _HTTPError(422, f"LFS object {sha256} has size {stored}, not {size}")
        return _File(sha256, stored, _git_blob_oid(_lfs_pointer(sha256, stored)), True)

    def _new_commit(
        self, repo: _Repo, parent: str | None, files: dict[str, _File], title: str, message: str, author: str
    ) -> _Commit:
        seed = json.dumps(
            {
                "repo": [repo.repo_type, repo.repo_id],
                "parent": parent,
                "files": {p: f.to_json() for p, f in sorted(files.items())},
                "title": title,
                "message": message,
                "n": len(repo.commits),
                "t": time.time_ns(),
                "r": secrets.token_hex(4),
            },
            sort_keys=True,
        )
        commit = _Commit(
            id=hashlib.sha1(seed.encode()).hexdigest(),
            parents=[parent] if parent else [],
            title=title,
            message=message,
            date=_now(),
            author=author,
            files=files,
        )
        repo.commits[commit.id] = commit
        return commit

    def _create_repo(self, repo_type: str, repo_id: str, private: bool) -> _Repo:
        repo = _Repo(repo_type, repo_id, private, _now(), secrets.token_hex(12))
        files = {".gitattributes": self._file_entry(DEFAULT_GITATTRIBUTES, lfs=False)}
        commit = self._new_commit(repo, None, files, "initial commit", "", "system")
        repo.branches["main"] = commit.id
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _lfs_patterns(self, commit: _Commit | None) -> list[str]:
        if commit is None or ".gitattributes" not in commit.files:
            return list(_LFS_PATTERNS)
        text = self._blobs.get(commit.files[".gitattributes"].sha256).decode("utf-8", "replace")
        patterns = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
                patterns.append(parts[0])
        return patterns

    def _wants_lfs(self, path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
        if size == 0:
            return False
        if size >= self.lfs_threshold or b"\0" in sample:
            return True
        name = path.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(path, pattern) if "/" in pattern else fnmatch.fnmatchcase(name, pattern)
            for pattern in patterns
        )

    def _match_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            decoded = unquote(path)
            for fault in self._faults:
                if fault.remaining <= 0 or (fault.method is not None and fault.method != method):
                    continue
                if fault.substring in path or fault.substring in decoded:
                    fault.remaining -= 1
                    self._faults = [f for f in self._faults if f.remaining > 0]
                    return fault
        return None

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._requests.append(HubRequest(method, path, status))


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    hub: FakeHubServer

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def close_connections(self) -> None:
        """Close the kept-alive client connections, so that a stopped server answers nothing more."""
        with self.connections_lock:
            connections, self.connections = self.connections, set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _take_revision(segments: list[str]) -> tuple[str, list[str]]:
    """Split ``[rev, *rest]``, where an unquoted special ref (``refs/pr/1``) spans three segments."""
    if not segments:
        raise _HTTPError(400, "Missing revision")
    if segments[0] == "refs" and len(segments) >= 3:
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    timeout = 60
    server: _HTTPServer

    # ------------------------------------------------------------------ plumbing

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    @property
    def hub(self) -> FakeHubServer:
        return self.server.hub

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        length: int | None = None,
    ) -> None:
        self._status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(value).encode(), headers=headers)

    def _error(self, err: _HTTPError) -> None:
        headers = dict(err.headers)
        headers["X-Error-Message"] = err.message.encode("ascii", "replace").decode()
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message}, headers=headers)

    def _dispatch(self) -> None:
        self._status = 0
        split = urlsplit(self.path)
        raw_path = split.path
        self._query = parse_qs(split.query, keep_blank_values=True)
        try:
            try:
                self._body = self._read_body()
                fault = self.hub._match_fault(self.command, raw_path)
                if fault is not None:
                    raise _HTTPError(fault.status, f"Injected failure ({fault.status}) for {raw_path}")
                self._route(raw_path)
            except _HTTPError as err:
                self._error(err)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                raise
            except Exception as exc:  # a bug in the fake: answer 500 with the traceback
                message = f"{type(exc).__name__}: {exc}"
                self._json(500, {"error": message, "traceback": traceback.format_exc()})
        finally:
            self.hub._record(self.command, raw_path, self._status)

    def _param(self, name: str, default: str | None = None) -> str | None:
        values = self._query.get(name)
        return values[-1] if values else default

    def _body_json(self) -> Any:
        if not self._body:
            return {}
        try:
            return json.loads(self._body)
        except ValueError as exc:
            raise _HTTPError(400, f"Invalid JSON body: {exc}") from exc

    # ------------------------------------------------------------------ auth

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or value.strip() != self.hub.token:
            raise _HTTPError(401, _INVALID_CREDENTIALS)
        return self.hub.user

    def _require_user(self) -> str:
        user = self._user()
        if user is None:
            raise _HTTPError(401, "You must be authenticated to access this resource (Authorization header)")
        return user

    def _may_write(self, user: str, namespace: str) -> bool:
        return self.hub.orgs is None or namespace == user or namespace in self.hub.orgs

    def _read_repo(self, repo_type: str, repo_id: str) -> _Repo:
        user = self._user()
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and (user is None or not self._may_write(user, repo.namespace))):
            raise _HTTPError(
                401 if user is None else 404, f"Repository {repo_id} not found", code="RepoNotFound"
            )
        return repo

    def _write_repo(self, repo_type: str, repo_id: str) -> tuple[_Repo, str]:
        user = self._require_user()
        repo = self._read_repo(repo_type, repo_id)
        if not self._may_write(user, repo.namespace):
            raise _HTTPError(403, f"You don't have the rights to write to {repo_id}")
        return repo, user

    @staticmethod
    def _commit_at(repo: _Repo, revision: str | None) -> _Commit:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[sha]

    # ------------------------------------------------------------------ routing

    def _route(self, raw_path: str) -> None:
        segments = [unquote(s) for s in raw_path.split("/")[1:]]
        if segments and segments[-1] == "" and len(segments) > 1:
            segments = segments[:-1]
        method = self.command
        head = segments[0] if segments else ""
        if head == "api":
            self._route_api(segments[1:], method)
            return
        if head == "_fake_lfs" and len(segments) == 2 and method == "PUT":
            self._lfs_put(segments[1])
            return
        repo_type = "model"
        rest = segments
        if head in ("datasets", "spaces"):
            repo_type = _TYPES[head]
            rest = segments[1:]
        if len(rest) >= 2 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{rest[0]}/{rest[1][: -len('.git')]}"
            action = rest[5] if len(rest) > 5 else ""
            if method == "POST" and action == "batch":
                self._lfs_batch(repo_type, repo_id)
                return
            if method == "POST" and action == "verify":
                self._lfs_verify(repo_type, repo_id)
                return
        if len(rest) >= 4 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            revision, path_parts = _take_revision(rest[3:])
            self._resolve(repo_type, f"{rest[0]}/{rest[1]}", revision, "/".join(path_parts))
            return
        raise _HTTPError(404, f"Not found: {method} {raw_path}")

    def _route_api(self, segs: list[str], method: str) -> None:
        if segs == ["whoami-v2"] and method == "GET":
            self._whoami()
            return
        if segs == ["repos", "create"] and method == "POST":
            self._repos_create()
            return
        if segs == ["repos", "delete"] and method == "DELETE":
            self._repos_delete()
            return
        if segs == ["validate-yaml"] and method == "POST":
            self._validate_yaml()
            return
        if len(segs) >= 3 and segs[0] in _TYPES:
            repo_type = _TYPES[segs[0]]
            repo_id = f"{segs[1]}/{segs[2]}"
            rest = segs[3:]
            action = rest[0] if rest else ""
            if method == "GET" and not rest:
                self._info(repo_type, repo_id, None)
                return
            if method == "GET" and action == "revision":
                self._info(repo_type, repo_id, _take_revision(rest[1:])[0])
                return
            if method == "GET" and action == "tree":
                revision, path_parts = _take_revision(rest[1:])
                self._tree(repo_type, repo_id, revision, "/".join(path_parts))
                return
            if method == "POST" and action == "paths-info":
                self._paths_info(repo_type, repo_id, _take_revision(rest[1:])[0])
                return
            if method == "GET" and rest == ["refs"]:
                self._refs(repo_type, repo_id)
                return
            if method == "GET" and action == "commits":
                self._commits(repo_type, repo_id, _take_revision(rest[1:])[0] if len(rest) > 1 else "main")
                return
            if method == "POST" and action == "preupload":
                self._preupload(repo_type, repo_id, _take_revision(rest[1:])[0])
                return
            if method == "POST" and action == "commit":
                self._commit(repo_type, repo_id, _take_revision(rest[1:])[0])
                return
            if action == "tag" and len(rest) >= 2 and method in ("POST", "DELETE"):
                name = _take_revision(rest[1:])[0]
                if method == "POST":
                    self._tag_create(repo_type, repo_id, name)
                else:
                    self._tag_delete(repo_type, repo_id, name)
                return
            if action == "branch" and len(rest) >= 2 and method in ("POST", "DELETE"):
                name = "/".join(rest[1:])
                if method == "POST":
                    self._branch_create(repo_type, repo_id, name)
                else:
                    self._branch_delete(repo_type, repo_id, name)
                return
            if method == "PUT" and rest == ["settings"]:
                self._settings(repo_type, repo_id)
                return
            if method == "GET" and action == "auth-check":
                if rest[1:] == ["write"]:
                    self._write_repo(repo_type, repo_id)
                else:
                    self._read_repo(repo_type, repo_id)
                self._json(200, {})
                return
        raise _HTTPError(404, f"Not found: {method} /api/{'/'.join(segs)}")

    # ------------------------------------------------------------------ account and repos

    def _whoami(self) -> None:
        user = self._require_user()
        orgs = [
            {"type": "org", "name": org, "fullname": org, "roleInOrg": "admin"} for org in self.hub.orgs or ()
        ]
        self._json(
            200,
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": "",
                "orgs": orgs,
                "auth": {
                    "type": "access_token",
                    "accessToken": {"displayName": "fake-hub", "role": "write", "createdAt": _now()},
                },
            },
        )

    def _repo_type_from_body(self, body: Mapping[str, Any]) -> str:
        repo_type = body.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise _HTTPError(400, f"Invalid repo type: {repo_type}")
        return repo_type

    def _repos_create(self) -> None:
        user = self._require_user()
        body = self._body_json()
        repo_type = self._repo_type_from_body(body)
        name = body.get("name")
        namespace = body.get("organization") or user
        if not isinstance(name, str) or not _REPO_NAME.fullmatch(name) or ".." in name or "--" in name:
            raise _HTTPError(400, f"Invalid repo name: {name!r}")
        if not self._may_write(user, namespace):
            raise _HTTPError(403, f"You don't have the rights to create a repo under {namespace}")
        visibility = body.get("visibility")
        private = (
            visibility in ("private", "protected") if visibility is not None else bool(body.get("private"))
        )
        repo_id = f"{namespace}/{name}"
        with self.hub._lock:
            existing = self.hub._repos.get((repo_type, repo_id))
            if existing is not None:
                self._json(
                    409,
                    {
                        "error": f"You already created this {repo_type} repo",
                        "url": existing.url(self.hub.endpoint),
                    },
                    headers={"X-Error-Message": f"You already created this {repo_type} repo"},
                )
                return
            repo = self.hub._create_repo(repo_type, repo_id, private)
            self.hub._save()
        self._json(200, {"url": repo.url(self.hub.endpoint), "name": repo_id, "id": repo.uid})

    def _repos_delete(self) -> None:
        user = self._require_user()
        body = self._body_json()
        repo_type = self._repo_type_from_body(body)
        repo_id = f"{body.get('organization') or user}/{body.get('name')}"
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            del self.hub._repos[(repo.repo_type, repo.repo_id)]
            self.hub._save()
        self._json(200, {})

    def _settings(self, repo_type: str, repo_id: str) -> None:
        body = self._body_json()
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            if "visibility" in body:
                repo.private = body["visibility"] in ("private", "protected")
            if "private" in body:
                repo.private = bool(body["private"])
            self.hub._save()
        self._json(200, {})

    def _validate_yaml(self) -> None:
        body = self._body_json()
        content = str(body.get("content") or "")
        lines = content.splitlines()
        if lines and lines[0].strip() == "---" and not any(line.strip() == "---" for line in lines[1:]):
            self._json(
                400, {"errors": [{"message": "The YAML front matter is not closed by '---'"}], "warnings": []}
            )
            return
        self._json(200, {"errors": [], "warnings": []})

    def _info(self, repo_type: str, repo_id: str, revision: str | None) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        blobs = _is_true(self._param("blobs", "false"))
        siblings = []
        for path, f in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=f.size, blobId=f.oid)
                if f.lfs:
                    sibling["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": len(_lfs_pointer(f.sha256, f.size)),
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": repo.uid,
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.id,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in commit.files.values()),
        }
        if repo_type == "model":
            info["modelId"] = repo.repo_id
        expand = self._query.get("expand") or self._query.get("expand[]")
        if expand:
            info = {k: v for k, v in info.items() if k in set(expand) | {"_id", "id"}}
        self._json(200, info)

    # ------------------------------------------------------------------ listings

    def _entry(self, repo: _Repo, commit: _Commit, path: str, expand: bool) -> dict[str, Any]:
        f = commit.files.get(path)
        if f is not None:
            entry: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": path}
            if f.lfs:
                entry["lfs"] = {
                    "oid": f.sha256,
                    "size": f.size,
                    "pointerSize": len(_lfs_pointer(f.sha256, f.size)),
                }
        else:
            entry = {"type": "directory", "oid": self._folder_oid(commit, path), "size": 0, "path": path}
        if expand:
            last = self._last_commit(repo, commit, path)
            entry["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
            if f is not None:
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
        return entry

    @staticmethod
    def _folder_oid(commit: _Commit, folder: str) -> str:
        prefix = folder + "/"
        listing = "".join(f"{p} {f.oid}\n" for p, f in sorted(commit.files.items()) if p.startswith(prefix))
        return hashlib.sha1(f"tree {folder}\n{listing}".encode()).hexdigest()

    def _last_commit(self, repo: _Repo, commit: _Commit, path: str) -> _Commit:
        """The newest commit of the history that changed ``path`` (a file or a folder)."""

        def state(c: _Commit) -> Any:
            if path in c.files:
                return c.files[path]
            return self._folder_oid(c, path)

        history = repo.history(commit.id)
        for current, parent in zip(history, [*history[1:], None], strict=True):
            if parent is None or state(current) != state(parent):
                return current
        return commit

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        recursive = _is_true(self._param("recursive", "false"))
        expand = _is_true(self._param("expand", "false"))
        path = path.strip("/")
        headers = {"X-Repo-Commit": commit.id}
        base = path + "/" if path else ""
        under = sorted(p for p in commit.files if p.startswith(base))
        if path and not under:
            raise _HTTPError(404, f"Entry not found: {path}", code="EntryNotFound", headers=headers)
        folders: set[str] = set()
        files: list[str] = []
        for p in under:
            parts = p[len(base) :].split("/")
            if recursive:
                folders.update(base + "/".join(parts[:i]) for i in range(1, len(parts)))
                files.append(p)
            elif len(parts) == 1:
                files.append(p)
            else:
                folders.add(base + parts[0])
        paths = sorted(folders) + files
        page_size = min(self.hub.tree_page_size, 50) if expand else self.hub.tree_page_size
        cursor = int(self._param("cursor", "0") or 0)
        page = paths[cursor : cursor + page_size]
        if cursor + page_size < len(paths):
            query = {k: v[-1] for k, v in self._query.items()}
            query["cursor"] = str(cursor + page_size)
            url = f"{self.hub.endpoint}{urlsplit(self.path).path}?{urlencode(query)}"
            headers["Link"] = f'<{url}>; rel="next"'
        with self.hub._lock:
            entries = [self._entry(repo, commit, p, expand) for p in page]
        self._json(200, entries, headers=headers)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        content_type = self.headers.get("Content-Type", "")
        if "json" in content_type:
            body = self._body_json()
            paths = body.get("paths") or []
            paths = [paths] if isinstance(paths, str) else list(paths)
            expand = _is_true(body.get("expand", False))
        else:
            form = parse_qs(self._body.decode("utf-8", "replace"), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = _is_true((form.get("expand") or ["false"])[-1])
        out = []
        with self.hub._lock:
            for raw in paths:
                path = str(raw).strip("/")
                if not path:
                    continue
                if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
                    out.append(self._entry(repo, commit, path, expand))
        self._json(200, out, headers={"X-Repo-Commit": commit.id})

    def _refs(self, repo_type: str, repo_id: str) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)

            def ref(kind: str, name: str, sha: str) -> dict[str, str]:
                return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": sha}

            data: dict[str, Any] = {
                "branches": [ref("heads", n, s) for n, s in sorted(repo.branches.items())],
                "tags": [ref("tags", n, s) for n, s in sorted(repo.tags.items())],
                "converts": [],
            }
            if _is_true(self._param("include_prs", "0")):
                data["pullRequests"] = [
                    {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": s}
                    for n, s in sorted(repo.prs.items())
                ]
        self._json(200, data)

    def _commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            history = repo.history(commit.id)
        self._json(
            200,
            [
                {
                    "id": c.id,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": c.author, "avatar": ""}],
                }
                for c in history
            ],
        )

    # ------------------------------------------------------------------ uploads

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = self._body_json()
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            patterns = self.hub._lfs_patterns(commit)
        files = body.get("files")
        if not isinstance(files, list):
            raise _HTTPError(400, "preupload: 'files' must be a list")
        out = []
        for item in files:
            path = _check_path(item.get("path"))
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except binascii.Error as exc:
                raise _HTTPError(400, f"preupload: invalid sample for {path}") from exc
            size = int(item.get("size") or 0)
            lfs = self.hub._wants_lfs(path, size, sample, patterns)
            existing = commit.files.get(path)
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            out.append(
                {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        self._json(200, {"files": out, "commitOid": commit.id})

    def _lfs_batch(self, repo_type: str, repo_id: str) -> None:
        self._write_repo(repo_type, repo_id)
        body = self._body_json()
        if body.get("operation") != "upload":
            raise _HTTPError(422, "Only the 'upload' operation of the LFS batch API is implemented")
        objects = []
        prefix = _URL_PREFIX[repo_type]
        for obj in body.get("objects") or []:
            oid, size = str(obj.get("oid")), int(obj.get("size") or 0)
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                objects.append({"oid": oid, "size": size, "error": {"code": 422, "message": "Invalid oid"}})
                continue
            if self.hub._blobs.has(oid) and self.hub._blobs.size(oid) == size:
                objects.append({"oid": oid, "size": size, "authenticated": True})
                continue
            signature = secrets.token_urlsafe(16)
            with self.hub._lock:
                self.hub._upload_grants[signature] = (oid, size)
            objects.append(
                {
                    "oid": oid,
                    "size": size,
                    "authenticated": True,
                    "actions": {
                        "upload": {"href": f"{self.hub.endpoint}/_fake_lfs/{signature}", "expires_in": 86400},
                        "verify": {
                            "href": f"{self.hub.endpoint}/{prefix}{repo_id}.git/info/lfs/objects/verify"
                        },
                    },
                }
            )
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}).encode(),
            content_type="application/vnd.git-lfs+json",
        )

    def _lfs_put(self, signature: str) -> None:
        with self.hub._lock:
            grant = self.hub._upload_grants.get(signature)
        if grant is None:
            raise _HTTPError(403, "Invalid or expired upload URL")
        oid, size = grant
        data = self._body
        if len(data) != size:
            raise _HTTPError(400, f"Size mismatch: expected {size} bytes, received {len(data)}")
        if hashlib.sha256(data).hexdigest() != oid:
            raise _HTTPError(400, f"sha256 mismatch for object {oid}")
        self.hub._blobs.put(data)
        self._send(200, b"", headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _lfs_verify(self, repo_type: str, repo_id: str) -> None:
        self._write_repo(repo_type, repo_id)
        body = self._body_json()
        oid, size = str(body.get("oid")), body.get("size")
        if not (re.fullmatch(r"[0-9a-f]{64}", oid) and self.hub._blobs.has(oid)):
            raise _HTTPError(404, f"LFS object {oid} not found")
        if size is not None and int(size) != self.hub._blobs.size(oid):
            raise _HTTPError(422, f"LFS object {oid} has another size")
        self._json(200, {"oid": oid, "size": self.hub._blobs.size(oid)})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        lines = [line for line in self._body.splitlines() if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except ValueError as exc:
            raise _HTTPError(400, f"Invalid NDJSON commit payload: {exc}") from exc
        if not items or items[0].get("key") != "header":
            raise _HTTPError(400, "The commit payload must start with a 'header' item")
        header = items[0].get("value") or {}
        title = str(header.get("summary") or "").strip()
        if not title:
            raise _HTTPError(400, "The commit summary must not be empty")
        description = str(header.get("description") or "")
        parent_commit = header.get("parentCommit")
        create_pr = _is_true(self._param("create_pr", "0"))
        with self.hub._lock:
            repo, user = self._write_repo(repo_type, repo_id)
            pr_match = re.fullmatch(r"refs/pr/(\d+)", revision)
            if pr_match is None and revision not in repo.branches:
                if repo.resolve(revision) is not None:
                    raise _HTTPError(400, f"Cannot commit to {revision}: not a branch")
                raise _HTTPError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
            head = self._commit_at(repo, revision)
            base = head
            if parent_commit:
                if create_pr:
                    base = self._commit_at(repo, str(parent_commit))
                elif not head.id.startswith(str(parent_commit)):
                    raise _HTTPError(
                        412, f"A commit has happened since {parent_commit}. Please refresh and try again."
                    )
            files = dict(base.files)
            for item in items[1:]:
                self._apply(files, item)
            for path in files:
                if any(other.startswith(path + "/") for other in files):
                    raise _HTTPError(400, f"'{path}' cannot be both a file and a folder")
            commit = self.hub._new_commit(repo, base.id, files, title, description, user)
            pr_url = None
            if create_pr:
                number = max([0, *repo.prs]) + 1
                repo.prs[number] = commit.id
                pr_url = f"{repo.url(self.hub.endpoint)}/discussions/{number}"
            elif pr_match is not None:
                repo.prs[int(pr_match[1])] = commit.id
            else:
                repo.branches[revision] = commit.id
            self.hub._save()
        self._json(
            200,
            {
                "success": True,
                "commitOid": commit.id,
                "commitUrl": f"{repo.url(self.hub.endpoint)}/commit/{commit.id}",
                "commitMessage": title,
                "pullRequestUrl": pr_url,
                "hookOutput": "",
            },
        )

    def _apply(self, files: dict[str, _File], item: Mapping[str, Any]) -> None:
        key = item.get("key")
        value = item.get("value") or {}
        if key == "file":
            path = _check_path(value.get("path"))
            encoding = str(value.get("encoding") or "utf-8").lower()
            content = value.get("content") or ""
            if encoding == "base64":
                try:
                    data = base64.b64decode(content, validate=True)
                except binascii.Error as exc:
                    raise _HTTPError(400, f"Invalid base64 content for {path}") from exc
            else:
                data = str(content).encode("utf-8")
            files[path] = self.hub._file_entry(data, lfs=False)
        elif key == "lfsFile":
            path = _check_path(value.get("path"))
            if value.get("algo", "sha256") != "sha256":
                raise _HTTPError(400, f"Unsupported LFS hash algorithm for {path}")
            files[path] = self.hub._lfs_entry(str(value.get("oid")), value.get("size"))
        elif key == "deletedFile":
            path = str(value.get("path") or "")
            if path not in files:
                raise _HTTPError(404, f"File not found: {path}", code="EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            folder = str(value.get("path") or "").strip("/")
            doomed = [p for p in files if not folder or p.startswith(folder + "/")]
            if not doomed:
                raise _HTTPError(404, f"Folder not found: {folder}", code="EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise _HTTPError(400, f"Unknown commit operation: {key!r}")

    # ------------------------------------------------------------------ refs

    def _tag_create(self, repo_type: str, repo_id: str, revision: str) -> None:
        body = self._body_json()
        tag = body.get("tag")
        if not isinstance(tag, str) or not tag or tag.startswith(("refs/", "/")) or " " in tag:
            raise _HTTPError(400, f"Invalid tag name: {tag!r}")
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            if tag in repo.tags:
                raise _HTTPError(409, f"Tag {tag} already exists")
            if tag in repo.branches:
                raise _HTTPError(409, f"A branch named {tag} already exists")
            repo.tags[tag] = commit.id
            self.hub._save()
        self._json(200, {"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.id})

    def _tag_delete(self, repo_type: str, repo_id: str, tag: str) -> None:
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            if tag not in repo.tags:
                raise _HTTPError(404, f"Tag {tag} not found", code="RevisionNotFound")
            del repo.tags[tag]
            self.hub._save()
        self._json(200, {})

    def _branch_create(self, repo_type: str, repo_id: str, branch: str) -> None:
        body = self._body_json()
        if not branch or branch.startswith(("refs/", "/")) or " " in branch:
            raise _HTTPError(400, f"Invalid branch name: {branch!r}")
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            if branch in repo.branches or branch in repo.tags:
                raise _HTTPError(409, f"Reference {branch} already exists")
            commit = self._commit_at(repo, body.get("startingPoint") or "main")
            repo.branches[branch] = commit.id
            self.hub._save()
        self._json(200, {})

    def _branch_delete(self, repo_type: str, repo_id: str, branch: str) -> None:
        with self.hub._lock:
            repo, _ = self._write_repo(repo_type, repo_id)
            if branch not in repo.branches:
                raise _HTTPError(404, f"Branch {branch} not found", code="RevisionNotFound")
            if branch == "main":
                raise _HTTPError(403, "Cannot delete the default branch")
            del repo.branches[branch]
            self.hub._save()
        self._json(200, {})

    # ------------------------------------------------------------------ downloads

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        with self.hub._lock:
            repo = self._read_repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            f = commit.files.get(path)
        headers = {"X-Repo-Commit": commit.id, "Accept-Ranges": "bytes"}
        if f is None:
            raise _HTTPError(404, f"Entry not found: {path}", code="EntryNotFound", headers=headers)
        headers["ETag"] = f'"{f.sha256 if f.lfs else f.oid}"'
        if f.lfs:
            headers["X-Linked-Etag"] = f'"{f.sha256}"'
            headers["X-Linked-Size"] = str(f.size)
        name = path.rsplit("/", 1)[-1]
        if name.isascii() and '"' not in name:
            headers["Content-Disposition"] = f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        range_header = self.headers.get("Range")
        if self.command == "HEAD":
            self._send(200, b"", content_type="application/octet-stream", headers=headers, length=f.size)
            return
        data = self.hub._blobs.get(f.sha256)
        if range_header:
            span = self._parse_range(range_header, f.size)
            if span is False:
                headers["Content-Range"] = f"bytes */{f.size}"
                raise _HTTPError(416, "Requested range not satisfiable", headers=headers)
            if span is not None:
                start, end = span
                headers["Content-Range"] = f"bytes {start}-{end}/{f.size}"
                self._send(
                    206, data[start : end + 1], content_type="application/octet-stream", headers=headers
                )
                return
        self._send(200, data, content_type="application/octet-stream", headers=headers)

    @staticmethod
    def _parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
        """``(start, end)`` inclusive, ``None`` to ignore the header, ``False`` when unsatisfiable."""
        match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
        if match is None or (not match[1] and not match[2]):
            return None
        if not match[1]:
            suffix = int(match[2])
            if suffix == 0 or size == 0:
                return False
            return max(0, size - suffix), size - 1
        start = int(match[1])
        end = min(int(match[2]), size - 1) if match[2] else size - 1
        if start >= size or start > end:
            return False
        return start, end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--user", default=DEFAULT_USER)
    parser.add_argument("--storage", default=None, help="folder for repos and blobs (default: in memory)")
    parser.add_argument("--lfs-threshold", type=int, default=1024)
    args = parser.parse_args(argv)
    server = FakeHubServer(
        args.token,
        args.storage,
        user=args.user,
        host=args.host,
        port=args.port,
        lfs_threshold=args.lfs_threshold,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(f"ENDPOINT {server.endpoint}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.2):
                pass
    print(json.dumps({"requests": len(server.requests)}), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
