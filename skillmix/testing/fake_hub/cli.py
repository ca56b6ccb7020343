"""A fake Hugging Face Hub on 127.0.0.1 for tests: repos, commits, LFS uploads, tags, downloads, auth.

The command line, ``python -m skillmix.testing.fake_hub``: :func:`main` prints ``ENDPOINT http://HOST:PORT``
on its first stdout line and serves until SIGTERM/SIGINT. (The first line above is the ``--help``
description.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading

from skillmix.testing.fake_hub.server import DEFAULT_TOKEN, DEFAULT_USER, FakeHubServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.split("\n", 1)[0])
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
