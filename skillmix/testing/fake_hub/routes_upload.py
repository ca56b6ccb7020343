"""Routes of the fake Hub that upload: ``preupload``, the LFS batch API (batch, signed upload, verify)
and the NDJSON commit."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

from skillmix.testing.fake_hub.handler import _HandlerBase
from skillmix.testing.fake_hub.repos import _URL_PREFIX, _check_path, _File, _HTTPError, _is_true


class _UploadRoutes(_HandlerBase):
    """``/api/{t}/{id}/preupload``, ``/{prefix}{id}.git/info/lfs/objects/...``, ``/_fake_lfs/{signature}``
    and ``/api/{t}/{id}/commit``."""

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
