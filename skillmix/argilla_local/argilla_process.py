"""The processes of a local Argilla, run by argilla-server's own interpreter (not skillmix's)::

    python -m skillmix.argilla_local.argilla_process server --owner owner.json --host 127.0.0.1 --port 6900
    python -m skillmix.argilla_local.argilla_process worker   # rq jobs (record status updates, webhooks, Hub)

:class:`skillmix.argilla_local.server.ArgillaServer` starts them with ``PYTHONPATH`` pointing at a folder that
holds only the ``skillmix`` package and with argilla-server's settings in the environment
(``ARGILLA_HOME_PATH``, ``ARGILLA_DATABASE_URL``, ``ARGILLA_REDIS_URL``,
``ARGILLA_SEARCH_ENGINE=skillmix-sql``). ``server`` and ``worker`` register the SQL search engine of
:mod:`skillmix.argilla_local.sqlsearch` before argilla-server reads its settings. Before serving, ``server``
migrates the database to the latest schema and reads the owner's username, password and API key from a JSON
file (mode 0600) to create that user, or reset its password and key to the file's; it never prints them. (One
process does both: importing argilla-server takes seconds.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path


def migrate() -> None:
    """Bring the database to the latest schema (alembic, as ``argilla_server database migrate`` does)."""
    from argilla_server.cli.database.migrate import migrate_db

    migrate_db(revision="head")


async def ensure_owner(username: str, password: str, api_key: str) -> str:
    """Create the owner user, or reset its password and API key; returns what was done."""
    from argilla_server.contexts import accounts
    from argilla_server.database import AsyncSessionLocal
    from argilla_server.models import User, UserRole

    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, username)
        if user is None:
            await User.create(
                db,
                first_name=username.capitalize(),
                username=username,
                role=UserRole.owner,
                password_hash=accounts.hash_password(password),
                api_key=api_key,
            )
            return "created"
        if user.api_key == api_key and accounts.verify_password(password, user.password_hash):
            return "unchanged"
        hashed = accounts.hash_password(password)
        await user.update(db, role=UserRole.owner, api_key=api_key, password_hash=hashed)
        return "updated"


def init(owner_file: Path) -> None:
    """Migrate the database and make sure the owner user of ``owner_file`` exists with its key."""
    owner = json.loads(owner_file.read_text())
    migrate()

    async def prepare() -> str:
        from argilla_server.database import async_engine

        try:
            return await ensure_owner(owner["username"], owner["password"], owner["api_key"])
        finally:
            await async_engine.dispose()  # its connections belong to this event loop, not the server's

    print(f"owner user {owner['username']!r}: {asyncio.run(prepare())}", flush=True)


def serve(host: str, port: int, owner_file: Path) -> None:
    """argilla-server's app under uvicorn, with the SQL search engine registered, after :func:`init`."""
    from skillmix.argilla_local.sqlsearch import register

    register()
    init(owner_file)
    import uvicorn

    uvicorn.run("argilla_server:app", host=host, port=port, access_log=False, log_level="warning")


def work(burst: bool = False) -> None:
    """One rq worker on argilla-server's queues (``high`` first), with the SQL search engine registered."""
    from skillmix.argilla_local.sqlsearch import register

    register()
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import Worker

    Worker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION).work(burst=burst, with_scheduler=True)


def main(argv: list[str] | None = None) -> int:
    prog = "python -m skillmix.argilla_local.argilla_process"
    parser = argparse.ArgumentParser(allow_abbrev=False, prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    server_parser = commands.add_parser("server", help="migrate, make the owner user, serve the API and UI")
    server_parser.add_argument("--owner", type=Path, required=True, help="JSON: username, password, api_key")
    server_parser.add_argument("--host", default="127.0.0.1")
    server_parser.add_argument("--port", type=int, required=True)
    worker_parser = commands.add_parser("worker", help="run argilla-server's background jobs")
    worker_parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args(argv)
    if args.command == "server":
        serve(args.host, args.port, args.owner)
    else:
        work(args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
