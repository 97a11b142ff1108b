"""Fixtures of integration tests that need servers of their own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.ticket import repository
from shared.database import create_pool, migrate
from shared.embedded import EmbeddedNats


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server of this test alone, so the session's streams and
    consumers stay as the other tests expect them."""
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL server,
    dropped after the test."""
    name = f"test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def ticket_pool(own_database: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new database with the ticket schema."""
    pool = await create_pool(own_database, "ticket-test", max_size=10)
    try:
        await migrate(pool, repository.SCHEMA, "services.ticket")
        yield pool
    finally:
        await pool.close()
