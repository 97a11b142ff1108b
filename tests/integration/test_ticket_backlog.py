"""While the consumer stores a backlog, the outbox relay runs one round per
poll interval and catches up once the backlog is stored."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
import zoneinfo
from collections.abc import Callable

import asyncpg
import pytest
from nats.aio.client import Client

from services.ticket import config, outbox, repository
from services.ticket.consumer import SubmissionConsumer
from services.ticket.tenants import TenantDirectory
from shared import messages, subjects
from tests.helpers import submitted_event

TENANT = "00000000-0000-4000-8000-0000000b10c0"


async def unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM ticket.outbox WHERE sent_at IS NULL"
    )
    return count


async def until_unsent_at_most(pool: asyncpg.Pool, limit: int, timeout: float) -> int:
    """Wait until at most `limit` outbox rows are unsent, and return their count."""
    deadline = time.monotonic() + timeout
    left = await unsent(pool)
    while left > limit and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        left = await unsent(pool)
    return left


async def becomes(condition: Callable[[], bool], timeout: float) -> bool:
    """Return whether `condition` became true within `timeout` seconds,
    checking every 10 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.01)
    return False


async def add_created_rows(pool: asyncpg.Pool, count: int) -> None:
    # One statement, so that every row is about as old as the first one
    # when the relay starts, however busy the machine is.
    await pool.executemany(
        "INSERT INTO ticket.outbox (event_id, subject, payload) VALUES ($1, $2, $3)",
        [
            (uuid.uuid4(), subjects.ticket_created(TENANT), f"{n}".encode())
            for n in range(count)
        ],
    )


async def test_relay_gives_way_to_a_backlog(
    ticket_pool: asyncpg.Pool, nc: Client
) -> None:
    rows = 300
    await add_created_rows(ticket_pool, rows)
    settings = config.from_env(
        {"TICKET_OUTBOX_BATCH": "10", "TICKET_OUTBOX_POLL_SECONDS": "0.5"}
    )
    backlog = True
    relay = outbox.OutboxRelay(ticket_pool, nc, settings, backlogged=lambda: backlog)
    task = asyncio.create_task(relay.run())
    try:
        # One round still runs, so events are not held back for ever.
        assert await until_unsent_at_most(ticket_pool, rows - 10, 10) <= rows - 10
        before = await unsent(ticket_pool)
        assert before >= rows - 20
        # Commits of the consumer wake the relay every few milliseconds.
        waking_until = time.monotonic() + 1.0
        while time.monotonic() < waking_until:
            relay.wake()
            await asyncio.sleep(0.01)
        # At most three rounds of 10 in one second at a poll interval of
        # 0.5 s, where a relay that did not give way would send all 300.
        assert before - await unsent(ticket_pool) <= 30

        backlog = False
        relay.wake()
        assert await until_unsent_at_most(ticket_pool, 0, 15) == 0
    finally:
        relay.stop()
        await task


@pytest.mark.parametrize("max_hold", ["1.5", "0"])
async def test_relay_holds_events_back_briefly(
    ticket_pool: asyncpg.Pool,
    nc: Client,
    max_hold: str,
) -> None:
    """A lasting backlog delays events for the bounded time only, and 0
    switches holding back off."""
    await add_created_rows(ticket_pool, 300)
    settings = config.from_env(
        {
            "TICKET_OUTBOX_BATCH": "10",
            "TICKET_OUTBOX_POLL_SECONDS": "5",
            "TICKET_OUTBOX_MAX_HOLD_SECONDS": max_hold,
        }
    )
    relay = outbox.OutboxRelay(ticket_pool, nc, settings, backlogged=lambda: True)

    task = asyncio.create_task(relay.run())
    try:
        # Holding on for the poll interval of 5 s would send 30 rows in 10 s.
        assert await until_unsent_at_most(ticket_pool, 0, 10) == 0
    finally:
        relay.stop()
        await task


async def test_end_of_hold_logged(ticket_pool: asyncpg.Pool, nc: Client) -> None:
    """When the bound ends the hold, the relay logs `outbox_hold_ended` once."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    relay_logger = logging.getLogger(outbox.__name__)
    relay_logger.addHandler(handler)
    # Without a level of its own, the logger takes the root logger's, which
    # passes only warnings under pytest unless a test changed it.
    level = relay_logger.level
    relay_logger.setLevel(logging.INFO)
    await add_created_rows(ticket_pool, 300)
    settings = config.from_env(
        {
            "TICKET_OUTBOX_BATCH": "10",
            "TICKET_OUTBOX_POLL_SECONDS": "5",
            "TICKET_OUTBOX_MAX_HOLD_SECONDS": "3",
        }
    )
    relay = outbox.OutboxRelay(ticket_pool, nc, settings, backlogged=lambda: True)

    task = asyncio.create_task(relay.run())
    try:
        await asyncio.sleep(1)
        unsent_after_1s = await unsent(ticket_pool)
        left = await until_unsent_at_most(ticket_pool, 0, 15)
    finally:
        relay.stop()
        await task
        relay_logger.removeHandler(handler)
        relay_logger.setLevel(level)

    ended = [r for r in records if getattr(r, "event", "") == "outbox_hold_ended"]
    # One round of 10 before the first poll interval: the rest was held.
    assert unsent_after_1s >= 290
    assert left == 0
    assert len(ended) == 1
    assert ended[0].max_hold_seconds == 3


async def publish_submissions(
    nc: Client, count: int, tenants: tuple[str, ...] = (TENANT,)
) -> None:
    js = nc.jetstream()
    for n in range(count):
        tenant = tenants[n % len(tenants)]
        event = submitted_event(tenant)
        await js.publish(
            subjects.ticket_submitted(tenant),
            messages.ENCODER.encode(event),
            headers={"Nats-Msg-Id": event.data.submission_id},
            stream=subjects.TICKET_STREAM,
        )


async def store_all(
    consumer: SubmissionConsumer, pool: asyncpg.Pool, count: int, *, timeout: float
) -> int:
    """Run `consumer` until `count` tickets are stored or `timeout` seconds
    have passed, stop it, and return how many tickets are stored."""
    task = asyncio.create_task(consumer.run())
    try:
        deadline = time.monotonic() + timeout
        stored = 0
        while stored < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            stored = await pool.fetchval("SELECT count(*) FROM ticket.tickets")
    finally:
        consumer.stop()
        await task
    return stored


async def test_consumer_reports_its_backlog(
    ticket_pool: asyncpg.Pool, nc: Client
) -> None:
    """The consumer reports a backlog while at least another full batch
    waits, and none once it has stored everything."""
    count = 100
    await publish_submissions(nc, count)

    settings = config.from_env(
        {"TICKET_FETCH_BATCH": "10", "TICKET_TENANT_CHECK": "off"}
    )
    seen: list[bool] = []
    consumer = SubmissionConsumer(
        ticket_pool,
        nc,
        settings,
        None,
        on_stored=lambda: seen.append(consumer.backlogged),
    )
    await consumer.setup()

    assert await store_all(consumer, ticket_pool, count, timeout=30) == count
    assert seen[0] is True
    assert seen[-1] is False
    assert consumer.backlogged is False


async def test_stuck_consumer_reports_no_backlog(
    ticket_pool: asyncpg.Pool, nc: Client
) -> None:
    """A backlog that cannot be stored, here because no tenant service
    replies, does not hold the relay back."""
    await publish_submissions(nc, 100)
    settings = config.from_env({"TICKET_FETCH_BATCH": "10"})
    consumer = SubmissionConsumer(
        ticket_pool, nc, settings, TenantDirectory(nc, timeout=0.2)
    )
    await consumer.setup()

    task = asyncio.create_task(consumer.run())
    try:
        assert await becomes(lambda: consumer.last_fetch > 0, 10)
        # Each failed batch sets the flag for the moment of its store attempt
        # and clears it for the pause of a second after it.
        samples = []
        for _ in range(300):
            samples.append(consumer.backlogged)
            await asyncio.sleep(0.01)
        info = await nc.jetstream().consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
    finally:
        consumer.stop()
        await task

    assert (info.num_pending or 0) >= 10
    assert samples.count(True) < len(samples) / 2
    assert await ticket_pool.fetchval("SELECT count(*) FROM ticket.tickets") == 0


async def test_backlog_numbers_follow_the_stream(
    ticket_pool: asyncpg.Pool, nc: Client
) -> None:
    """Batches stored while the next one is prepared still number each
    tenant's tickets in stream order, with ids in the same order."""
    tenants = (TENANT, "00000000-0000-4000-8000-0000000b10c1")
    count = 150
    await publish_submissions(nc, count, tenants)
    settings = config.from_env(
        {"TICKET_FETCH_BATCH": "7", "TICKET_TENANT_CHECK": "off"}
    )
    consumer = SubmissionConsumer(ticket_pool, nc, settings, None)
    await consumer.setup()

    assert await store_all(consumer, ticket_pool, count, timeout=30) == count
    for tenant in tenants:
        rows = await ticket_pool.fetch(
            "SELECT id, number FROM ticket.tickets WHERE tenant_id = $1"
            " ORDER BY stream_sequence",
            uuid.UUID(tenant),
        )
        numbers = [row["number"] for row in rows]
        ids = [row["id"] for row in rows]
        assert numbers == [f"{numbers[0][:4]}-{n:06d}" for n in range(1, 76)]
        assert ids == sorted(ids)


async def test_fallback_keeps_stream_order(
    ticket_pool: asyncpg.Pool, nc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that an unexpected error sends one message at a time keeps
    its turn until its last message, so the next batch numbers after it."""
    prepare = repository.prepare_batch
    raised: list[int] = []

    def fail_in_batches(
        submissions: list[repository.Submission], *, number_zone: zoneinfo.ZoneInfo
    ) -> repository.PreparedBatch:
        # Stands in for a bug that only a batch of several hits.
        if len(submissions) > 1 and any(
            item.data.subject == "fails in a batch" for item in submissions
        ):
            raised.append(len(submissions))
            raise RuntimeError("unexpected")
        return prepare(submissions, number_zone=number_zone)

    monkeypatch.setattr(repository, "prepare_batch", fail_in_batches)
    js = nc.jetstream()
    count = 120
    for n in range(count):
        fields = {"subject": "fails in a batch"} if n % 40 == 0 else {}
        event = submitted_event(TENANT, **fields)
        await js.publish(
            subjects.ticket_submitted(TENANT),
            messages.ENCODER.encode(event),
            headers={"Nats-Msg-Id": event.data.submission_id},
            stream=subjects.TICKET_STREAM,
        )
    settings = config.from_env(
        {"TICKET_FETCH_BATCH": "20", "TICKET_TENANT_CHECK": "off"}
    )
    consumer = SubmissionConsumer(ticket_pool, nc, settings, None)
    await consumer.setup()

    assert await store_all(consumer, ticket_pool, count, timeout=30) == count
    assert raised
    numbers = [
        row["number"]
        for row in await ticket_pool.fetch(
            "SELECT number FROM ticket.tickets ORDER BY stream_sequence"
        )
    ]
    assert numbers == sorted(numbers)


async def test_cancelled_consumer_hands_back_batches(
    ticket_pool: asyncpg.Pool, nc: Client
) -> None:
    """Cancelled while one batch waits for a counter lock and the next for
    its turn, the consumer hands both back, so another run stores them well
    within the ack wait of 30 s."""
    count = 40
    await publish_submissions(nc, count)
    settings = config.from_env(
        {"TICKET_FETCH_BATCH": "5", "TICKET_TENANT_CHECK": "off"}
    )
    year = dt.datetime.now(dt.UTC).year
    await ticket_pool.execute(
        "INSERT INTO ticket.ticket_counters VALUES ($1, $2, 0)", uuid.UUID(TENANT), year
    )
    consumer = SubmissionConsumer(ticket_pool, nc, settings, None)
    await consumer.setup()

    async with ticket_pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT * FROM ticket.ticket_counters FOR UPDATE")
        task = asyncio.create_task(consumer.run())
        try:
            assert await becomes(lambda: len(consumer._in_hand) == 10, 10)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    again = SubmissionConsumer(ticket_pool, nc, settings, None)
    assert await store_all(again, ticket_pool, count, timeout=10) == count
