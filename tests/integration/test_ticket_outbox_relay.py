"""The outbox relay publishes rounds in order and survives a failed publish
in the middle of a round."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from services.ticket import config, outbox
from shared import subjects

TENANT = "00000000-0000-4000-8000-00000000a11e"


@pytest.fixture
async def pool(ticket_pool: asyncpg.Pool) -> asyncpg.Pool:
    return ticket_pool


def relay(pool: asyncpg.Pool, nc: Client) -> outbox.OutboxRelay:
    settings = config.from_env({"TICKET_PUBLISH_TIMEOUT_SECONDS": "2"})
    return outbox.OutboxRelay(pool, nc, settings)


async def add_rows(pool: asyncpg.Pool, rows: list[tuple[str, bytes]]) -> list[int]:
    """Insert outbox rows of (subject, payload); return their ids in order."""
    ids = []
    for subject, payload in rows:
        ids.append(
            await pool.fetchval(
                "INSERT INTO ticket.outbox (event_id, subject, payload)"
                " VALUES ($1, $2, $3) RETURNING id",
                uuid.uuid4(),
                subject,
                payload,
            )
        )
    return ids


async def outbox_state(pool: asyncpg.Pool) -> dict[int, asyncpg.Record]:
    rows = await pool.fetch(
        "SELECT id, sent_at, stream_sequence, attempts, last_error FROM ticket.outbox"
    )
    return {row["id"]: row for row in rows}


async def stream_payloads(nc: Client) -> list[bytes]:
    """Return the payloads of every ticket event now in the stream, in order."""
    js = nc.jetstream()
    pull = await js.pull_subscribe(
        subjects.TICKET_EVENTS_WILDCARD,
        stream=subjects.TICKET_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=60),
    )
    try:
        info = await pull.consumer_info()
        pending = info.num_pending or 0
        if pending == 0:
            return []
        return [msg.data for msg in await pull.fetch(pending, timeout=5)]
    finally:
        await pull.unsubscribe()


CREATED = subjects.ticket_created(TENANT)
CHANGED = subjects.ticket_status_changed(TENANT)
NO_STREAM = f"elsewhere.v1.{TENANT}.created"
"""A `created` subject that no stream stores, so its publish fails with
NoStreamResponseError instead of an acknowledgement."""


async def test_round_publishes_in_id_order(pool: asyncpg.Pool, nc: Client) -> None:
    kinds = [CREATED, CREATED, CHANGED, CREATED, CHANGED, CHANGED, CREATED]
    ids = await add_rows(pool, [(s, f"{n}".encode()) for n, s in enumerate(kinds)])

    sent, more = await relay(pool, nc).publish_round()

    assert (sent, more) == (len(kinds), False)
    state = await outbox_state(pool)
    sequences = [state[outbox_id]["stream_sequence"] for outbox_id in ids]
    assert sequences == sorted(sequences)
    assert all(state[outbox_id]["sent_at"] is not None for outbox_id in ids)
    assert await stream_payloads(nc) == [f"{n}".encode() for n in range(len(kinds))]


async def test_failed_publish_mid_window(pool: asyncpg.Pool, nc: Client) -> None:
    """The rows around a failed one in its window are marked sent, the failed
    one counts an attempt, and the window after it waits unsent."""
    first, failing, third, changed = await add_rows(
        pool,
        [(CREATED, b"1"), (NO_STREAM, b"2"), (CREATED, b"3"), (CHANGED, b"4")],
    )

    sent, more = await relay(pool, nc).publish_round()

    assert (sent, more) == (-1, False)
    state = await outbox_state(pool)
    assert state[first]["sent_at"] is not None
    assert state[third]["sent_at"] is not None
    assert state[failing]["sent_at"] is None
    assert state[failing]["attempts"] == 1
    assert "NoStreamResponse" in state[failing]["last_error"]
    assert state[changed]["sent_at"] is None
    assert state[changed]["attempts"] == 0
    assert await stream_payloads(nc) == [b"1", b"3"]


async def test_failed_retry_publishes_once(pool: asyncpg.Pool, nc: Client) -> None:
    """The next round tries the failed row again and leaves sent rows alone."""
    _, failing, _ = await add_rows(
        pool, [(CREATED, b"1"), (NO_STREAM, b"2"), (CREATED, b"3")]
    )
    await relay(pool, nc).publish_round()

    sent, _ = await relay(pool, nc).publish_round()

    assert sent == -1
    state = await outbox_state(pool)
    assert state[failing]["attempts"] == 2
    assert await stream_payloads(nc) == [b"1", b"3"]


async def test_unsendable_row_stops_window(pool: asyncpg.Pool, nc: Client) -> None:
    """A row that cannot even be sent keeps the rows after it unsent."""
    too_large = b"x" * (nc.max_payload + 1)
    first, failing, third = await add_rows(
        pool, [(CREATED, b"1"), (CREATED, too_large), (CREATED, b"3")]
    )

    sent, _ = await relay(pool, nc).publish_round()

    assert sent == -1
    state = await outbox_state(pool)
    assert state[first]["sent_at"] is not None
    assert state[failing]["attempts"] == 1
    assert state[third]["sent_at"] is None
    assert state[third]["attempts"] == 0
    assert await stream_payloads(nc) == [b"1"]
