"""Run the submission consumer and the outbox relay for the app's lifetime."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from litestar.datastructures import State
from nats.aio.client import Client

from services.ticket import config, outbox, outbox_retention
from services.ticket.consumer import SubmissionConsumer
from services.ticket.tenants import TenantDirectory
from shared import settings, subjects

logger = logging.getLogger(__name__)


async def _stop(task: asyncio.Task[None], name: str) -> None:
    try:
        async with asyncio.timeout(10):
            await task
    except TimeoutError:
        logger.warning(
            "%s did not stop within 10 s, cancelled",
            name,
            extra={"event": "worker_cancelled"},
        )
        task.cancel()


def _start(coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.create_task(coroutine, name=name)


@asynccontextmanager
async def run_workers(
    state: State, pool: asyncpg.Pool, nc: Client
) -> AsyncIterator[None]:
    """Start the consumer and, unless switched off, the relay; stop both on exit.

    Both stop before the app drains NATS, so their last acks and publishes go
    out.
    """
    ticket_settings = config.from_env()
    tenants = (
        TenantDirectory(nc, timeout=settings.request_timeout())
        if ticket_settings.tenant_check
        else None
    )
    relay = outbox.OutboxRelay(
        pool, nc, ticket_settings, backlogged=lambda: consumer.backlogged
    )
    consumer = SubmissionConsumer(
        pool, nc, ticket_settings, tenants, on_stored=relay.wake
    )
    await consumer.setup()
    state.consumer = consumer
    state.relay = relay if ticket_settings.outbox_relay else None
    state.ticket_settings = ticket_settings

    pruner = (
        outbox_retention.OutboxPruner(
            pool, dt.timedelta(days=ticket_settings.outbox_keep_days)
        )
        if ticket_settings.outbox_keep_days
        else None
    )

    consumer_task = _start(consumer.run(), "ticket-consumer")
    relay_task = _start(relay.run(), "ticket-outbox") if state.relay else None
    pruner_task = _start(pruner.run(), "ticket-outbox-pruner") if pruner else None
    logger.info(
        "consumer started",
        extra={
            "event": "consumer_started",
            "consumer": subjects.TICKET_STORE_CONSUMER,
            "outbox_relay": ticket_settings.outbox_relay,
            "tenant_check": ticket_settings.tenant_check,
        },
    )
    if not ticket_settings.outbox_relay:
        logger.warning(
            "outbox relay switched off: events stay in the outbox",
            extra={"event": "outbox_relay_off"},
        )
    try:
        yield
    finally:
        consumer.stop()
        relay.stop()
        if pruner is not None:
            pruner.stop()
            assert pruner_task is not None
            await _stop(pruner_task, "outbox pruner")
        await _stop(consumer_task, "consumer")
        if relay_task is not None:
            await _stop(relay_task, "outbox relay")
        logger.info("consumer stopped", extra={"event": "consumer_stopped"})
