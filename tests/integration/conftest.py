"""Fixtures of integration tests that need servers of their own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from services.ticket import repository
from shared import streams
from shared.database import create_pool, migrate
from shared.embedded import EmbeddedNats, EmbeddedNatsCluster


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server of this test alone, so the session's streams and
    consumers stay as the other tests expect them."""
    with EmbeddedNats(tmp_path / "nats") as server:
        yield server


@pytest.fixture
async def nc(own_nats: EmbeddedNats) -> AsyncIterator[Client]:
    """A connection to the test's own nats-server, with the ticket stream."""
    client = await nats.connect(own_nats.url)
    await streams.ensure_ticket_stream(client.jetstream())
    yield client
    await client.close()


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


async def wait_for_replicated_stream(servers: list[str], timeout: float) -> None:
    """Create and delete a stream with three replicas, retrying until `timeout`.

    This shows that the cluster places a replicated stream before any
    service relies on it.
    """
    config = StreamConfig(
        name="CLUSTER_PROBE",
        subjects=["cluster-probe.>"],
        storage=StorageType.MEMORY,
        num_replicas=3,
    )
    deadline = time.monotonic() + timeout
    nc = await nats.connect(servers=servers, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=2.0)
        while True:
            try:
                await js.add_stream(config)
                break
            except nats.errors.Error as exc:
                if time.monotonic() > deadline:
                    msg = f"no stream with 3 replicas after {timeout:.0f} s: {exc!r}"
                    raise AssertionError(msg) from exc
                await asyncio.sleep(0.2)
        await js.delete_stream("CLUSTER_PROBE")
    finally:
        await nc.close()


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[EmbeddedNatsCluster]:
    """Three nats-servers in one JetStream cluster, for this test alone."""
    cluster = EmbeddedNatsCluster(tmp_path / "nats", size=3, name="linkdesk-test")
    await asyncio.to_thread(cluster.start)
    try:
        await wait_for_replicated_stream(cluster.urls, timeout=30.0)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.stop)
