"""The fake Hub's request handler: the route mixins put together, and the routing of a path to them."""

from __future__ import annotations

from urllib.parse import unquote

from skillmix.testing.fake_hub.handler import _take_revision
from skillmix.testing.fake_hub.repos import _TYPES, _HTTPError
from skillmix.testing.fake_hub.routes_files import _FileRoutes
from skillmix.testing.fake_hub.routes_repos import _RepoRoutes
from skillmix.testing.fake_hub.routes_upload import _UploadRoutes


class _Handler(_RepoRoutes, _FileRoutes, _UploadRoutes):
    """Answers one connection's requests: :meth:`_route` picks the route method."""

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
