"""HTTP plumbing of the fake Hub: the threading server that tracks its connections, and the base request
handler (body reading, JSON answers, error answers, fault injection, request accounting, authentication and
repo access) that the route mixins build on."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import threading
import traceback
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from skillmix.testing.fake_hub.repos import _Commit, _HTTPError, _Repo
from skillmix.testing.fake_hub.state import _HubState

_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    hub: _HubState

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


class _HandlerBase(http.server.BaseHTTPRequestHandler):
    """Plumbing and authentication; :class:`skillmix.testing.fake_hub.routes._Handler` adds the routes."""

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
    def hub(self) -> _HubState:
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
        self.hub._begin()
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

    def _route(self, raw_path: str) -> None:
        """Answer the request (the routing of :class:`skillmix.testing.fake_hub.routes._Handler`)."""
        raise NotImplementedError

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
