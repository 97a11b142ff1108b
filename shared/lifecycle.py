"""Start and stop the NATS connection and database pool of a service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar.datastructures import State
from nats.aio.client import Client

from shared import database, messaging, settings

logger = logging.getLogger(__name__)

DATABASE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    TimeoutError,
)
"""Errors of a database that is out of reach or refuses the service."""


@asynccontextmanager
async def database_pool(
    state: State, service: str, schema: str, package: str
) -> AsyncIterator[asyncpg.Pool]:
    """Open the pool, apply migrations, and close the pool on exit."""
    url = settings.database_url()
    try:
        pool = await database.create_pool(url, service)
    except DATABASE_ERRORS as exc:
        # Raised again, which ends the start; this line names the server.
        logger.error(
            "database connection failed at %s",
            settings.server_address(url),
            extra={"event": "database_connect_failed", "error": repr(exc)},
        )
        raise
    try:
        await database.migrate(pool, schema, package)
        state.pool = pool
        yield pool
    finally:
        await pool.close()
        logger.info("database pool closed", extra={"event": "pool_closed"})


@asynccontextmanager
async def nats_connection(state: State, service: str) -> AsyncIterator[Client]:
    """Connect to NATS and drain the connection on exit, so replies and acks
    that are in flight still go out."""
    nc = await messaging.connect(settings.nats_servers(), service)
    state.nc = nc
    logger.info(
        "nats connected",
        extra={
            "event": "nats_connected",
            "server": settings.server_address(nc.connected_url.geturl())
            if nc.connected_url
            else "",
        },
    )
    try:
        yield nc
    finally:
        if not nc.is_closed:
            await nc.drain()
        logger.info("nats drained", extra={"event": "nats_drained"})


async def database_ready(pool: asyncpg.Pool) -> bool:
    """Return whether the database answers a trivial query within a second."""
    try:
        async with asyncio.timeout(1):
            await pool.fetchval("SELECT 1")
    except DATABASE_ERRORS:
        return False
    return True
