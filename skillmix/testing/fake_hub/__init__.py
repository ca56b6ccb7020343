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

Modules of this package: ``repos`` (repos, commits, files, blobs), ``faults`` (fault injection, request
log), ``state`` (the state the handlers change), ``handler`` (HTTP plumbing, authentication),
``routes_repos`` / ``routes_files`` / ``routes_upload`` (the route mixins), ``routes`` (the handler and its
routing), ``server`` (:class:`FakeHubServer`) and ``cli`` (the command line).
"""

from __future__ import annotations

from skillmix.testing.fake_hub.cli import main
from skillmix.testing.fake_hub.faults import HubRequest
from skillmix.testing.fake_hub.repos import DEFAULT_GITATTRIBUTES
from skillmix.testing.fake_hub.server import DEFAULT_TOKEN, DEFAULT_USER, FakeHubServer

__all__ = [
    "DEFAULT_GITATTRIBUTES",
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "FakeHubServer",
    "HubRequest",
    "main",
]
