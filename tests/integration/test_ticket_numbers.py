"""Ticket numbers per tenant and year, under concurrent inserts and in batches."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo

import asyncpg
import msgspec
import pytest

from services.ticket import lifecycle, repository
from shared import events, reference, subjects

UTC = zoneinfo.ZoneInfo("UTC")


@pytest.fixture
async def pool(ticket_pool: asyncpg.Pool) -> asyncpg.Pool:
    return ticket_pool


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


# --- batches ----------------------------------------------------------------


async def store_batch(
    pool: asyncpg.Pool, batch: list[events.TicketSubmittedData], first_sequence: int
) -> list[repository.StoreResult]:
    """Store a batch in transactions of its own, as the consumer does."""
    submissions = [
        repository.Submission(data, first_sequence + n) for n, data in enumerate(batch)
    ]
    async with pool.acquire() as connection:
        return await repository.store_submissions(
            connection, submissions, number_zone=UTC
        )


def number_of(result: repository.StoreResult) -> str | None:
    assert isinstance(result, repository.Ticket), result
    return result.number


async def test_batch_numbers_in_stream_order(pool: asyncpg.Pool) -> None:
    """Interleaved tenants in one batch: each tenant's numbers follow the stream."""
    first, second = uuid.uuid4(), uuid.uuid4()
    batch = [submission(first if n % 3 else second) for n in range(9)]

    results = await store_batch(pool, batch, 100)

    numbers = [number_of(result) for result in results]
    assert numbers == [
        "2026-000001",
        "2026-000001",
        "2026-000002",
        "2026-000002",
        "2026-000003",
        "2026-000004",
        "2026-000003",
        "2026-000005",
        "2026-000006",
    ]
    history = await pool.fetchval("SELECT count(*) FROM ticket.ticket_history")
    assert history == 9
    outbox = await pool.fetch("SELECT payload FROM ticket.outbox ORDER BY id")
    created = [msgspec.json.decode(row["payload"])["data"] for row in outbox]
    assert [event["submission_id"] for event in created] == [
        data.submission_id
        for data in sorted(batch, key=lambda data: uuid.UUID(data.tenant_id))
    ]
    by_ticket = {event["ticket_id"]: event for event in created}
    for result in results:
        assert isinstance(result, repository.Ticket)
        assert by_ticket[result.id]["number"] == result.number
        assert by_ticket[result.id]["submission_id"] == str(result.submission_id)


async def test_batch_returns_the_stored_rows(pool: asyncpg.Pool) -> None:
    """The tickets a batch returns are built before the insert. They must
    equal the rows read back, and the `created` events carry the same values."""
    tenant = uuid.uuid4()
    batch = [submission(tenant) for _ in range(5)]

    results = await store_batch(pool, batch, 40)

    tickets = [result for result in results if isinstance(result, repository.Ticket)]
    assert len(tickets) == 5
    assert [ticket.id for ticket in tickets] == sorted(ticket.id for ticket in tickets)
    for ticket in tickets:
        detail = await repository.get_ticket(pool, tenant, str(ticket.id))
        assert detail.ticket == ticket
        assert [(h.to_status, h.changed_at) for h in detail.history] == [
            ("new", ticket.stored_at)
        ]
    rows = await pool.fetch("SELECT payload FROM ticket.outbox ORDER BY id")
    created = [msgspec.json.decode(row["payload"])["data"] for row in rows]
    assert [
        (event["ticket_id"], event["number"], event["created_at"]) for event in created
    ] == [
        (ticket.id, ticket.number, ticket.stored_at.isoformat().replace("+00:00", "Z"))
        for ticket in tickets
    ]


async def test_batch_duplicates_use_no_number(pool: asyncpg.Pool) -> None:
    """A stored submission and a repeat within the batch come back as None."""
    tenant = uuid.uuid4()
    earlier = submission(tenant)
    await store(pool, earlier)
    repeated = submission(tenant)
    batch = [earlier, repeated, submission(tenant), repeated]

    results = await store_batch(pool, batch, 10)
    again = await store_batch(pool, batch, 20)

    assert results[0] is None
    assert number_of(results[1]) == "2026-000002"
    assert number_of(results[2]) == "2026-000003"
    assert results[3] is None
    assert again == [None] * 4
    counter = await pool.fetchval("SELECT last_value FROM ticket.ticket_counters")
    assert counter == 3
    outbox = await pool.fetchval("SELECT count(*) FROM ticket.outbox")
    assert outbox == 3


async def test_batch_unstorable_row_rolled_back_alone(pool: asyncpg.Pool) -> None:
    """A NUL byte fails its own row; the rest is stored without a gap."""
    tenant = uuid.uuid4()
    batch = [submission(tenant) for _ in range(4)]
    batch[1] = msgspec.structs.replace(batch[1], subject="Null\x00Byte")

    results = await store_batch(pool, batch, 1)

    assert isinstance(results[1], asyncpg.DataError)
    assert [number_of(results[n]) for n in (0, 2, 3)] == [
        "2026-000001",
        "2026-000002",
        "2026-000003",
    ]
    stored = await pool.fetchval("SELECT count(*) FROM ticket.tickets")
    assert stored == 3
    outbox = await pool.fetchval("SELECT count(*) FROM ticket.outbox")
    assert outbox == 3
    counter = await pool.fetchval("SELECT last_value FROM ticket.ticket_counters")
    assert counter == 3


async def test_batch_in_caller_transaction(pool: asyncpg.Pool) -> None:
    """Inside the caller's transaction a failing row rolls back alone too,
    and nothing is visible before the caller commits."""
    tenant = uuid.uuid4()
    batch = [submission(tenant) for _ in range(3)]
    batch[0] = msgspec.structs.replace(batch[0], subject="Null\x00Byte")
    submissions = [repository.Submission(data, n) for n, data in enumerate(batch)]

    async with pool.acquire() as connection, connection.transaction():
        results = await repository.store_submissions(
            connection, submissions, number_zone=UTC
        )
        visible = await pool.fetchval("SELECT count(*) FROM ticket.tickets")

    assert visible == 0
    assert isinstance(results[0], asyncpg.DataError)
    assert [number_of(results[n]) for n in (1, 2)] == ["2026-000001", "2026-000002"]
    stored = await pool.fetchval("SELECT count(*) FROM ticket.tickets")
    assert stored == 2


async def test_concurrent_batches_distinct_numbers(pool: asyncpg.Pool) -> None:
    """Batches over the same tenants in opposite orders neither deadlock nor
    share a number."""
    tenants = [uuid.uuid4() for _ in range(4)]
    batches = [
        [submission(tenants[(n + shift) % 4]) for n in range(40)] for shift in range(8)
    ]
    for batch in batches[::2]:
        batch.reverse()

    stored = await asyncio.gather(
        *(store_batch(pool, batch, 1000 * n) for n, batch in enumerate(batches))
    )

    for tenant in tenants:
        numbers = sorted(
            result.number
            for results in stored
            for result in results
            if isinstance(result, repository.Ticket) and result.tenant_id == tenant
        )
        assert numbers == [f"2026-{n:06d}" for n in range(1, 81)]


async def wait_for_lock_wait(pool: asyncpg.Pool, pid: int) -> None:
    """Wait until the backend `pid` waits for a lock (bounded by count)."""
    for _ in range(500):
        waiting = await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
            pid,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"backend {pid} never waited for a lock")


async def test_batch_racing_insert_leaves_no_gap(pool: asyncpg.Pool) -> None:
    """A submission that another transaction commits while the batch waits for
    the counter comes back as None, and its number is not used up twice."""
    tenant = uuid.uuid4()
    racing, other = submission(tenant), submission(tenant)
    batch = [repository.Submission(racing, 2), repository.Submission(other, 3)]
    async with (
        pool.acquire() as first,
        pool.acquire() as second,
        second.transaction(),
    ):
        async with first.transaction():
            [ticket] = await repository.store_submissions(
                first, [repository.Submission(racing, 1)], number_zone=UTC
            )
            storing = asyncio.create_task(
                repository.store_submissions(second, batch, number_zone=UTC)
            )
            try:
                await wait_for_lock_wait(pool, second.get_server_pid())
            except BaseException:
                storing.cancel()
                raise
        # The first transaction committed; the batch goes on.
        results = await storing

    assert number_of(ticket) == "2026-000001"
    assert results[0] is None
    assert number_of(results[1]) == "2026-000002"
    counter = await pool.fetchval("SELECT last_value FROM ticket.ticket_counters")
    assert counter == 2


async def test_waiting_batch_ids_follow_numbers(pool: asyncpg.Pool) -> None:
    """A batch that waits for a counter lock takes its ids after the wait, so
    a tenant's later number never gets a smaller id than an earlier one."""
    first, second = sorted([uuid.uuid4(), uuid.uuid4()])

    async def store_on(
        connection: asyncpg.Connection, batch: list[events.TicketSubmittedData]
    ) -> list[repository.StoreResult]:
        submissions = [repository.Submission(data, 1) for data in batch]
        return await repository.store_submissions(
            connection, submissions, number_zone=UTC
        )

    async with (
        pool.acquire() as holder,
        pool.acquire() as waiter,
        pool.acquire() as other,
    ):
        async with holder.transaction():
            await store_on(holder, [submission(first)])
            # Locks `first`'s counter and waits there for `holder`.
            waiting = asyncio.create_task(
                store_on(waiter, [submission(first), submission(second)])
            )
            await wait_for_lock_wait(pool, waiter.get_server_pid())
            [early] = await store_on(other, [submission(second)])
        [_, late] = await asyncio.wait_for(waiting, 10)

    assert isinstance(early, repository.Ticket)
    assert isinstance(late, repository.Ticket)
    assert early.number == "2026-000001"
    assert late.number == "2026-000002"
    assert late.id > early.id


# --- the batch statement ----------------------------------------------------


async def test_batch_statement_writes_whole_events(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    """The statement that stores a batch fills ids, numbers and times into
    the `created` events. Each reads back as msgspec encodes it, with the
    values of its ticket row, even when a reporter typed JSON."""
    tenants = [uuid.uuid4(), uuid.uuid4()]
    texts = ['"time":"x"', '"data":{"ticket_id":0,"number":"",', 'a\\"b}} \u2028 ü']
    batch = [
        msgspec.structs.replace(
            submission(tenants[n % 2]), subject=texts[n % 3], description=texts[-1]
        )
        for n in range(12)
    ]

    with caplog.at_level("DEBUG", logger=repository.__name__):
        results = await store_batch(pool, batch, 1)

    assert not [r for r in caplog.records if r.getMessage().startswith("batch")]
    rows = {
        row["id"]: row
        for row in await pool.fetch(
            "SELECT id, number, stored_at, subject FROM ticket.tickets"
        )
    }
    outbox = await pool.fetch("SELECT subject, payload FROM ticket.outbox ORDER BY id")
    assert len(outbox) == len(rows) == 12
    for entry in outbox:
        event = msgspec.json.decode(entry["payload"], type=events.TicketCreated)
        assert entry["payload"] == msgspec.json.encode(event)
        row = rows[event.data.ticket_id]
        assert event.data.number == row["number"]
        assert event.time == event.data.created_at == row["stored_at"]
        assert event.data.subject == row["subject"]
        assert entry["subject"] == subjects.ticket_created(event.data.tenant_id)
    for result in results:
        assert isinstance(result, repository.Ticket)
        assert (result.number, result.stored_at) == (
            rows[result.id]["number"],
            rows[result.id]["stored_at"],
        )


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2026, 12, 5, 9, 1, 2, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 5, 9, 1, 2, 100, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 5, 9, 1, 2, 123456, tzinfo=dt.UTC),
        dt.datetime(
            2027, 1, 1, 0, 30, 0, 999999, tzinfo=dt.timezone(dt.timedelta(hours=2))
        ),
    ],
)
async def test_statement_writes_times_as_msgspec(
    pool: asyncpg.Pool, moment: dt.datetime
) -> None:
    written = await pool.fetchval(
        f"SELECT {repository._rfc3339('$1::timestamptz')}", moment
    )

    assert written.encode() == msgspec.json.encode(moment.astimezone(dt.UTC))[1:-1]


@pytest.mark.parametrize(
    ("year", "counter"), [(2026, 1), (2026, 999999), (2026, 1000000), (987, 12)]
)
async def test_statement_writes_numbers_as_python(
    pool: asyncpg.Pool, year: int, counter: int
) -> None:
    written = await pool.fetchval(
        f"SELECT {repository._padded('$1::integer', 4)} || '-'"
        f" || {repository._padded('$2::integer', 6)}",
        year,
        counter,
    )

    assert written == lifecycle.format_number(year, counter)


async def test_batch_with_bad_uuid_stores_others(pool: asyncpg.Pool) -> None:
    """A submission id that is not a UUID fails the batch's statement and
    then fails alone; the others are stored."""
    tenant = uuid.uuid4()
    batch = [submission(tenant) for _ in range(3)]
    batch[1] = msgspec.structs.replace(batch[1], submission_id="not-a-uuid")

    results = await store_batch(pool, batch, 1)

    assert isinstance(results[1], ValueError)
    assert number_of(results[0]) == "2026-000001"
    assert number_of(results[2]) == "2026-000002"
