"""The fake Hub server: :class:`FakeHubServer`, its start and stop, the client configuration recipe and the
helpers tests inspect it with."""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from skillmix.testing.fake_hub.handler import _HTTPServer
from skillmix.testing.fake_hub.routes import _Handler
from skillmix.testing.fake_hub.state import _HubState

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USER = "skillmix-tester"


class FakeHubServer(_HubState):
    """A Hub-protocol server on 127.0.0.1 (see the package docstring for what it implements).

    Args:
        token: the one valid access token.
        storage: folder to keep repos and blobs in (created; reused when it already holds a state), or
            ``None`` to keep everything in memory.
        user: the token's user name (``whoami``), also the namespace it may write to.
        orgs: organisations the user belongs to (``whoami``). When given, writes are limited to the user's
            and these namespaces (403 elsewhere); when ``None`` (default) any namespace is writable.
        host: the address to listen on.
        port: the port to listen on (0: a free port).
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
        super().__init__(token, storage, user, orgs, lfs_threshold, tree_page_size)
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self._thread: threading.Thread | None = None
        self.host = host
        self.port = int(self._httpd.server_address[1])

    # ------------------------------------------------------------------ lifecycle

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
        import time (see the package docstring)."""
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
