"""The server state the HTTP handlers work on: settings, repos, blobs and upload grants, persisted to
``state.json``, with the operations that build files, commits and repos."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from skillmix.testing.fake_hub.faults import HubRequest, _Fault, _RequestLog
from skillmix.testing.fake_hub.repos import (
    _LFS_PATTERNS,
    DEFAULT_GITATTRIBUTES,
    _BlobStore,
    _Commit,
    _File,
    _git_blob_oid,
    _HTTPError,
    _lfs_pointer,
    _now,
    _Repo,
)


class _HubState(_RequestLog):
    """Everything :class:`FakeHubServer` keeps but its socket and thread; what the handlers read and change
    (under ``_lock``)."""

    host: str
    port: int

    def __init__(
        self,
        token: str,
        storage: str | os.PathLike[str] | None,
        user: str,
        orgs: Iterable[str] | None,
        lfs_threshold: int,
        tree_page_size: int,
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

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``HF_ENDPOINT`` and ``HfApi(endpoint=...)``."""
        return f"http://{self.host}:{self.port}"

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
