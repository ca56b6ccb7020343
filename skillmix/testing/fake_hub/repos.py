"""The in-memory model of the fake Hub: repos, commits, files, the content-addressed blob store, the
``.gitattributes`` LFS patterns of a new repo, and the error that becomes an HTTP error answer."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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
_TRUE = {"1", "true", "yes", "on"}


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
