"""Routes of the fake Hub for the account and repos: ``whoami``, repo creation, deletion, settings and
info, YAML validation, tags and branches."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from skillmix.testing.fake_hub.handler import _HandlerBase
from skillmix.testing.fake_hub.repos import _URL_PREFIX, _HTTPError, _is_true, _lfs_pointer, _now

_REPO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class _RepoRoutes(_HandlerBase):
    """``/api/whoami-v2``, ``/api/repos/...``, ``/api/validate-yaml``, ``/api/{t}/{id}[/revision/{rev}]``,
    ``.../settings``, ``.../tag/...`` and ``.../branch/...``."""

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
