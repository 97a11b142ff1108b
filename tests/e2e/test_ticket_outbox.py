"""The `created` event survives a crash of the ticket service, exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from linkdesk.processes import ServiceProcess, Stack
from services.ticket.outbox import EXIT_CODE_AFTER_PUBLISH
from shared import messages, subjects
from tests.helpers import Admin, TenantFixture, submitted_event


async def publish_submission(nc: Client, tenant_id: str) -> str:
    """Publish a submission as the gateway would; return its submission id."""
    event = submitted_event(tenant_id, subject="Outbox", description="Absturz")
    data = event.data
    await nc.jetstream().publish(
        subjects.ticket_submitted(tenant_id),
        messages.ENCODER.encode(event),
        stream=subjects.TICKET_STREAM,
        headers={"Nats-Msg-Id": data.submission_id},
    )
    return data.submission_id


async def created_events(nc: Client, tenant_id: str) -> list[dict[str, Any]]:
    """Return every `created` event of the tenant now in the stream."""
    js = nc.jetstream()
    pull = await js.pull_subscribe(
        subjects.ticket_created(tenant_id),
        stream=subjects.TICKET_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=60),
    )
    found: list[dict[str, Any]] = []
    info = await pull.consumer_info()
    try:
        for _ in range(100):
            info = await pull.consumer_info()
            if info.num_pending == 0:
                break
            for msg in await pull.fetch(info.num_pending, timeout=5):
                found.append(msgspec.json.decode(msg.data))
    finally:
        await pull.unsubscribe()
        await js.delete_consumer(subjects.TICKET_STREAM, info.name)
    return found


async def outbox_rows(database_url: str, tenant_id: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT event_id, sent_at, attempts FROM ticket.outbox"
            " WHERE subject = $1 ORDER BY id",
            subjects.ticket_created(tenant_id),
        )
    finally:
        await connection.close()


async def wait_for_outbox(
    database_url: str, tenant_id: str, *, sent: bool, timeout: float = 30.0
) -> asyncpg.Record:
    """Wait until the tenant's one `created` row exists (and is sent, if asked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await outbox_rows(database_url, tenant_id)
        if len(rows) == 1 and (not sent or rows[0]["sent_at"] is not None):
            return rows[0]
        await asyncio.sleep(0.1)
    pytest.fail(f"outbox of tenant {tenant_id} not {'sent' if sent else 'written'}")


async def wait_until_outbox_drained(database_url: str, timeout: float = 30.0) -> None:
    """Wait until the session's relay has published every row of earlier tests."""
    deadline = time.monotonic() + timeout
    connection = await asyncpg.connect(database_url)
    try:
        while time.monotonic() < deadline:
            unsent = await connection.fetchval(
                "SELECT count(*) FROM ticket.outbox WHERE sent_at IS NULL"
            )
            if unsent == 0:
                return
            await asyncio.sleep(0.1)
    finally:
        await connection.close()
    pytest.fail("the outbox still has unsent rows of earlier tests")


def own_ticket_service(stack: Stack, log_dir: Path, **env: str) -> ServiceProcess:
    """Stop the session's ticket service; start one with extra settings on its port.

    Both would share the durable consumer, so only one runs at a time.
    """
    session_service = stack.services["ticket"]
    session_service.stop()
    service = ServiceProcess(
        "ticket",
        session_service.port,
        {**session_service.env, **env},
        log_dir / "ticket-own.log",
    )
    service.start()
    service.wait_ready()
    return service


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_created_once_after_kill_before_publish(
    running_stack: Stack,
    admin: Admin,
    tenant: TenantFixture,
    nc: Client,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Committed but unpublished: the restarted service publishes it once."""
    service = own_ticket_service(running_stack, tmp_path, TICKET_OUTBOX_RELAY="off")
    try:
        submission_id = await publish_submission(nc, tenant.id)
        [ticket] = admin.wait_for_tickets(tenant.id, 1)
        row = await wait_for_outbox(database_url, tenant.id, sent=False)
        assert ticket["submission_id"] == submission_id
        assert row["sent_at"] is None
        assert await created_events(nc, tenant.id) == []
    finally:
        service.kill()

    running_stack.start("ticket")
    sent = await wait_for_outbox(database_url, tenant.id, sent=True)
    created = await created_events(nc, tenant.id)

    assert len(created) == 1
    assert created[0]["id"] == str(sent["event_id"])
    assert created[0]["data"]["ticket_id"] == ticket["id"]
    assert created[0]["data"]["number"] == ticket["number"]


async def test_created_once_after_kill_before_mark(
    running_stack: Stack,
    admin: Admin,
    tenant: TenantFixture,
    nc: Client,
    database_url: str,
    tmp_path: Path,
) -> None:
    """Published but not marked sent: the repeat is dropped by Nats-Msg-Id."""
    await wait_until_outbox_drained(database_url)
    service = own_ticket_service(
        running_stack, tmp_path, TICKET_TEST_EXIT_AFTER_OUTBOX_PUBLISH="on"
    )
    try:
        await publish_submission(nc, tenant.id)
        assert service.process is not None
        exit_code = await asyncio.to_thread(service.process.wait, 30)
    finally:
        service.kill()
    assert exit_code == EXIT_CODE_AFTER_PUBLISH
    row = await wait_for_outbox(database_url, tenant.id, sent=False)
    assert row["sent_at"] is None
    assert len(await created_events(nc, tenant.id)) == 1

    running_stack.start("ticket")
    sent = await wait_for_outbox(database_url, tenant.id, sent=True)
    created = await created_events(nc, tenant.id)

    assert len(created) == 1
    assert created[0]["id"] == str(sent["event_id"])
    assert sent["attempts"] == 1
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert created[0]["data"]["ticket_id"] == ticket["id"]
