"""Routes of the fake Hub that read a revision: the tree listing, ``paths-info``, refs, commits, and file
downloads (``resolve``, with ranges)."""

from __future__ import annotations

import hashlib
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from skillmix.testing.fake_hub.handler import _HandlerBase
from skillmix.testing.fake_hub.repos import _Commit, _HTTPError, _is_true, _lfs_pointer, _Repo


class _FileRoutes(_HandlerBase):
    """``/api/{t}/{id}/tree``, ``.../paths-info``, ``.../refs``, ``.../commits`` and
    ``/{prefix}{id}/resolve/{rev}/{path}``."""

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
