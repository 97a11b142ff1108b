"""Ticket numbers per tenant and year, under concurrent inserts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.ticket import lifecycle, repository
from shared import events, reference
from shared.database import create_pool, migrate

UTC = zoneinfo.ZoneInfo("UTC")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new database with the ticket schema, dropped afterwards."""
    name = f"numbers_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    pool = await create_pool(url, "ticket-test", max_size=10)
    try:
        await migrate(pool, repository.SCHEMA, "services.ticket")
        yield pool
    finally:
        await pool.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def submission(
    tenant_id: uuid.UUID, submitted_at: dt.datetime | None = None
) -> events.TicketSubmittedData:
    submission_id = uuid.uuid4()
    return events.TicketSubmittedData(
        submission_id=str(submission_id),
        reference=reference.for_submission(submission_id),
        tenant_id=str(tenant_id),
        personnel_number="004711",
        reporter_name="Jörg Bäcker",
        category="IT",
        subject="Nummer",
        description="Test",
        submitted_at=submitted_at or dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC),
    )


async def store(
    pool: asyncpg.Pool, data: events.TicketSubmittedData
) -> repository.Ticket | None:
    return await repository.store_submission(pool, data, 1, number_zone=UTC)


async def test_concurrent_inserts_get_distinct_numbers(pool: asyncpg.Pool) -> None:
    """Forty inserts at once, in two tenants, number each tenant 1 to 20."""
    tenants = [uuid.uuid4(), uuid.uuid4()]
    batch = [submission(tenants[n % 2]) for n in range(40)]

    stored = await asyncio.gather(*(store(pool, data) for data in batch))

    for tenant in tenants:
        numbers = sorted(
            ticket.number
            for ticket in stored
            if ticket is not None and ticket.tenant_id == tenant
        )
        assert numbers == [f"2026-{n:06d}" for n in range(1, 21)]
    counters = await pool.fetch(
        "SELECT tenant_id, year, last_value FROM ticket.ticket_counters"
    )
    assert sorted(row["last_value"] for row in counters) == [20, 20]
    created = await pool.fetchval("SELECT count(*) FROM ticket.outbox")
    assert created == 40


async def test_redelivery_uses_no_number(pool: asyncpg.Pool) -> None:
    """A submission stored again returns None and leaves no gap in the numbers."""
    tenant = uuid.uuid4()
    first = submission(tenant)

    stored = await store(pool, first)
    again = await asyncio.gather(*(store(pool, first) for _ in range(5)))
    second = await store(pool, submission(tenant))

    assert stored is not None
    assert stored.number == "2026-000001"
    assert again == [None] * 5
    assert second is not None
    assert second.number == "2026-000002"
    history = await pool.fetchval(
        "SELECT count(*) FROM ticket.ticket_history WHERE ticket_id = $1", stored.id
    )
    assert history == 1
    outbox = await pool.fetchval("SELECT count(*) FROM ticket.outbox")
    assert outbox == 2


async def test_number_year_restarts_counter(pool: asyncpg.Pool) -> None:
    """Each year starts at 000001; the year follows the configured time zone."""
    tenant = uuid.uuid4()
    new_year_utc = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC)
    zurich = zoneinfo.ZoneInfo("Europe/Zurich")

    late = await store(pool, submission(tenant, new_year_utc))
    local = await repository.store_submission(
        pool, submission(tenant, new_year_utc), 2, number_zone=zurich
    )

    assert late is not None
    assert late.number == "2026-000001"
    assert local is not None
    assert local.number == "2027-000001"
    assert lifecycle.format_number(2027, 1_234_567) == "2027-1234567"


async def test_status_changes_serialised(pool: asyncpg.Pool) -> None:
    """Two concurrent identical changes: one succeeds, the other gets 409."""
    tenant = uuid.uuid4()
    ticket = await store(pool, submission(tenant))
    assert ticket is not None

    results = await asyncio.gather(
        *(
            repository.change_status(
                pool,
                tenant,
                str(ticket.id),
                to_status="in_progress",
                comment="",
                changed_by=f"admin-{n}",
            )
            for n in range(2)
        ),
        return_exceptions=True,
    )

    failures = [r for r in results if isinstance(r, lifecycle.InvalidTransition)]
    successes = [r for r in results if isinstance(r, repository.TicketDetail)]
    assert len(successes) == 1
    assert len(failures) == 1
    assert "from in_progress to in_progress" in str(failures[0])
    changes = await pool.fetchval(
        "SELECT count(*) FROM ticket.outbox WHERE subject LIKE '%.status_changed'"
    )
    assert changes == 1
