"""PostgreSQL pools and schema migrations for the services that own tables.

Each service owns one schema and keeps its migrations as numbered `.sql`
files next to its code. `migrate` applies the missing ones under an advisory
lock, so two replicas that start at once apply each file exactly once.
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)


async def create_pool(
    url: str, service: str, *, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """Open a pool whose connections show `linkdesk-<service>` in pg_stat_activity."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        server_settings={"application_name": f"linkdesk-{service}"},
        # A dead connection is dropped after this many seconds of idling, so
        # a restarted server does not leave the pool holding broken sockets.
        max_inactive_connection_lifetime=60,
        reset=_keep_session,
    )
    assert pool is not None
    return pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a released connection to the pool without a reset query.

    asyncpg rolls back an open transaction on release either way. Its
    default reset then runs a query that clears session state (advisory
    locks, cursors, LISTEN, settings). That is one more round trip to
    PostgreSQL per release, such as every round of the outbox relay and
    every lookup of the tenant service. No code of ours leaves session
    state behind: settings are set per transaction. The one session lock,
    the migration lock, is held by a connection that `migrate` resets
    before it goes back, or closes.
    """


def _lock_key(schema: str) -> int:
    digest = hashlib.sha256(f"linkdesk-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def migration_files(package: str) -> list[tuple[str, str]]:
    """Return `(name, sql)` of every `.sql` file in `package.migrations`, in order."""
    folder = resources.files(package).joinpath("migrations")
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
    return files


async def migrate(pool: asyncpg.Pool, schema: str, package: str) -> list[str]:
    """Apply the migrations of `package` that `schema` lacks; return their names."""
    applied: list[str] = []
    async with pool.acquire() as connection:
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
            applied = await _apply_missing(connection, schema, package)
            # The pool does not reset sessions. This one holds the lock, and
            # a migration file may have changed a session setting.
            await connection.reset()
        except BaseException:
            # A cancel can come after the server granted the lock and before
            # its reply was read, so the session may hold the lock unknown to
            # us. Closing the connection ends the session and its lock.
            connection.terminate()
            raise
    return applied


async def _apply_missing(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    schema: str,
    package: str,
) -> list[str]:
    """Apply the files of `package` not yet recorded in `schema`, each in a
    transaction of its own, and return their names. Call with the lock held."""
    applied: list[str] = []
    await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    await connection.execute(
        f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
        " name text PRIMARY KEY,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {
        row["name"]
        for row in await connection.fetch(
            f'SELECT name FROM "{schema}".schema_migrations'
        )
    }
    for name, sql in migration_files(package):
        if name in done:
            continue
        async with connection.transaction():
            await connection.execute(f'SET LOCAL search_path TO "{schema}"')
            await connection.execute(sql)
            await connection.execute(
                f'INSERT INTO "{schema}".schema_migrations (name) VALUES ($1)',
                name,
            )
        applied.append(name)
        logger.info(
            "migration applied",
            extra={"event": "migration_applied", "schema": schema, "migration": name},
        )
    return applied
