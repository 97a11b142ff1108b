"""Schema migrations against a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import asyncpg

from shared.database import _lock_key, create_pool, migrate, migration_files

PACKAGE = "services.ticket"
SCHEMA = "ticket"
SERVICE = "ticket"


async def test_concurrent_migrate_applies_each_file_once(
    own_database: str,
) -> None:
    """Two pools migrating one fresh database at once apply every file once."""
    expected = [name for name, _ in migration_files(PACKAGE)]
    assert expected, f"{PACKAGE} has no migration files"

    first = await create_pool(own_database, SERVICE, max_size=2)
    second = await create_pool(own_database, SERVICE, max_size=2)
    try:
        applied_first, applied_second = await asyncio.gather(
            migrate(first, SCHEMA, PACKAGE), migrate(second, SCHEMA, PACKAGE)
        )

        # The advisory lock lets one call apply everything, and the other then
        # finds every file recorded and applies nothing.
        assert sorted(applied_first + applied_second) == expected
        assert not set(applied_first) & set(applied_second)

        rows = await first.fetch(
            f'SELECT name FROM "{SCHEMA}".schema_migrations ORDER BY name'
        )
        assert [row["name"] for row in rows] == expected

        tickets_table = await first.fetchval(
            "SELECT to_regclass($1)::text", f"{SCHEMA}.tickets"
        )
        assert tickets_table == f"{SCHEMA}.tickets"

        # A third run on a migrated schema is a no-op.
        assert await migrate(second, SCHEMA, PACKAGE) == []
    finally:
        await first.close()
        await second.close()


async def test_pool_sets_application_name(own_database: str) -> None:
    """Pool connections show `linkdesk-<service>` in pg_stat_activity."""
    database_name = urlsplit(own_database).path.lstrip("/")
    first = await create_pool(own_database, SERVICE, min_size=1)
    second = await create_pool(own_database, SERVICE, min_size=1)
    observer = await asyncpg.connect(own_database)
    try:
        await asyncio.gather(
            migrate(first, SCHEMA, PACKAGE), migrate(second, SCHEMA, PACKAGE)
        )
        rows = await observer.fetch(
            "SELECT application_name FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            database_name,
        )
        names = [row["application_name"] for row in rows]

        # min_size=1 keeps at least one connection of each pool open.
        assert len(names) >= 2, names
        assert set(names) == {f"linkdesk-{SERVICE}"}
    finally:
        await observer.close()
        await first.close()
        await second.close()


async def test_released_connection_rolled_back_without_reset(
    own_database: str,
) -> None:
    """A released connection keeps its session, and never an open transaction.

    The pool skips asyncpg's reset query, so a session setting survives the
    release. A transaction left open is still rolled back.
    """
    pool = await create_pool(own_database, SERVICE, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection:
            await connection.execute("SET statement_timeout = '7s'")
            await connection.execute("CREATE TABLE IF NOT EXISTS released (n int)")
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO released VALUES (1)")

        async with pool.acquire() as connection:
            assert await connection.fetchval("SHOW statement_timeout") == "7s"
            assert await connection.fetchval("SELECT count(*) FROM released") == 0
            assert not connection.is_in_transaction()
    finally:
        await pool.close()


async def test_migration_lock_released_for_next_migrate(own_database: str) -> None:
    """Without a reset on release, the migration lock is still released, so
    a second pool can migrate while the first keeps its connection."""
    first = await create_pool(own_database, SERVICE, min_size=1, max_size=1)
    second = await create_pool(own_database, SERVICE, min_size=1, max_size=1)
    try:
        await migrate(first, SCHEMA, PACKAGE)
        async with first.acquire():
            assert await asyncio.wait_for(migrate(second, SCHEMA, PACKAGE), 10) == []
    finally:
        await first.close()
        await second.close()


async def test_cancelled_migrate_leaves_no_lock(own_database: str) -> None:
    """A migrate cancelled while it waits for the lock leaves no lock behind,
    even when the server granted it just as the cancel arrived."""
    key = _lock_key(SCHEMA)
    holder = await asyncpg.connect(own_database)
    observer = await asyncpg.connect(own_database)
    pool = await create_pool(own_database, SERVICE, min_size=1, max_size=1)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", key)
        waiting = asyncio.create_task(migrate(pool, SCHEMA, PACKAGE))
        for _ in range(500):
            if await observer.fetchval(
                "SELECT count(*) FROM pg_locks"
                " WHERE locktype = 'advisory' AND NOT granted"
            ):
                break
            await asyncio.sleep(0.01)
        await holder.execute("SELECT pg_advisory_unlock($1)", key)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting

        free = False
        for _ in range(100):
            free = await observer.fetchval("SELECT pg_try_advisory_lock($1)", key)
            if free:
                break
            await asyncio.sleep(0.05)
        assert free, "the migration lock is still held after a cancelled migrate"
        await observer.execute("SELECT pg_advisory_unlock($1)", key)
        # The same pool migrates to the end, without waiting on itself.
        await asyncio.wait_for(migrate(pool, SCHEMA, PACKAGE), 10)
        recorded = await observer.fetch(
            f'SELECT name FROM "{SCHEMA}".schema_migrations ORDER BY name'
        )
        assert [row["name"] for row in recorded] == [
            name for name, _ in migration_files(PACKAGE)
        ]
    finally:
        await pool.close()
        await holder.close()
        await observer.close()
