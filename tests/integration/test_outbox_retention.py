"""Sent outbox rows are deleted once they are older than the kept days;
unsent and younger rows stay."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid

import asyncpg
import pytest

from services.ticket import config, outbox_retention
from shared.database import create_pool
from shared.settings import SettingsError

KEEP = dt.timedelta(days=30)


@pytest.fixture
async def pool(ticket_pool: asyncpg.Pool) -> asyncpg.Pool:
    return ticket_pool


async def add_row(pool: asyncpg.Pool, sent_days_ago: float | None) -> int:
    """Insert an outbox row, sent that many days ago (None: unsent)."""
    row_id: int = await pool.fetchval(
        "INSERT INTO ticket.outbox (event_id, subject, payload, created_at, sent_at)"
        " VALUES ($1, 'tickets.created.x', '{}', now() - interval '60 days',"
        " now() - $2::interval) RETURNING id",
        uuid.uuid4(),
        None if sent_days_ago is None else dt.timedelta(days=sent_days_ago),
    )
    return row_id


async def remaining(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch("SELECT id FROM ticket.outbox ORDER BY id")
    return [row["id"] for row in rows]


async def test_prune_keeps_unsent_and_young(pool: asyncpg.Pool) -> None:
    old = [await add_row(pool, 40) for _ in range(3)]
    unsent = await add_row(pool, None)
    young = [await add_row(pool, 1) for _ in range(2)]

    deleted, more = await outbox_retention.OutboxPruner(pool, KEEP).prune()

    assert deleted == len(old)
    assert not more
    assert await remaining(pool) == [unsent, *young]


async def test_prune_deletes_in_chunks(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass deletes at most its chunks; the next pass goes on."""
    monkeypatch.setattr(outbox_retention, "CHUNK_ROWS", 2)
    monkeypatch.setattr(outbox_retention, "MAX_CHUNKS_PER_PASS", 2)
    for _ in range(5):
        await add_row(pool, 40)
    young = await add_row(pool, 0.5)
    pruner = outbox_retention.OutboxPruner(pool, KEEP)

    first = await pruner.prune()
    second = await pruner.prune()

    assert first == (4, True)
    assert second == (1, False)
    assert await remaining(pool) == [young]


async def test_pruner_catches_up_soon(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full pass is followed by the next one after a short pause, not after
    the whole interval."""
    monkeypatch.setattr(outbox_retention, "CHUNK_ROWS", 2)
    monkeypatch.setattr(outbox_retention, "MAX_CHUNKS_PER_PASS", 1)
    monkeypatch.setattr(outbox_retention, "CATCH_UP_SECONDS", 0.01)
    for _ in range(5):
        await add_row(pool, 40)
    pruner = outbox_retention.OutboxPruner(pool, KEEP, interval=60)

    task = asyncio.create_task(pruner.run())
    try:
        left = await remaining(pool)
        for _ in range(250):
            if not left:
                break
            await asyncio.sleep(0.02)
            left = await remaining(pool)
    finally:
        pruner.stop()
        await asyncio.wait_for(task, 5)

    assert left == []


async def test_young_first_row_does_not_stall(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row sent late with a low id is in every chunk. The old rows behind
    it are still deleted, and a full pass still reports rows left over."""
    monkeypatch.setattr(outbox_retention, "CHUNK_ROWS", 2)
    monkeypatch.setattr(outbox_retention, "MAX_CHUNKS_PER_PASS", 2)
    young = await add_row(pool, 1)
    for _ in range(4):
        await add_row(pool, 40)
    pruner = outbox_retention.OutboxPruner(pool, KEEP)

    first = await pruner.prune()
    second = await pruner.prune()
    third = await pruner.prune()

    assert first == (2, True)
    assert second == (2, True)
    assert third == (0, False)
    assert await remaining(pool) == [young]


async def test_row_marked_unsent_meanwhile_kept(pool: asyncpg.Pool) -> None:
    """A row set back to unsent while the delete waits for its lock is kept."""
    row = await add_row(pool, 40)
    async with pool.acquire() as other, other.transaction():
        await other.execute(
            "UPDATE ticket.outbox SET sent_at = NULL WHERE id = $1", row
        )
        pruning = asyncio.create_task(outbox_retention.OutboxPruner(pool, KEEP).prune())
        await wait_for_lock_wait(pool)
    deleted, _ = await asyncio.wait_for(pruning, 5)

    assert deleted == 0
    assert await remaining(pool) == [row]


async def wait_for_lock_wait(pool: asyncpg.Pool) -> None:
    """Wait until some backend waits for a row lock (bounded by count)."""
    for _ in range(500):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    pytest.fail("no backend waited for a lock")


async def run_for(pruner: outbox_retention.OutboxPruner, seconds: float) -> None:
    """Run the pruner's loop for `seconds`, then stop it and wait for the end."""
    task = asyncio.create_task(pruner.run())
    await asyncio.sleep(seconds)
    pruner.stop()
    await asyncio.wait_for(task, 5)


def logged(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records if getattr(record, "event", "") == event
    ]


async def test_pruner_logs_and_stops(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await add_row(pool, 40)
    pruner = outbox_retention.OutboxPruner(pool, KEEP, interval=0.05)

    with caplog.at_level(logging.INFO, logger=outbox_retention.__name__):
        await run_for(pruner, 0.3)

    pruned = logged(caplog, "outbox_pruned")
    assert len(pruned) == 1
    assert getattr(pruned[0], "count", None) == 1
    assert await remaining(pool) == []


async def test_pruner_survives_database_down(
    own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed pool fails like an unreachable database: the pass fails, is
    logged, and the loop goes on until stopped."""
    pool = await create_pool(own_database, "ticket-test", max_size=1)
    await pool.close()
    pruner = outbox_retention.OutboxPruner(pool, KEEP, interval=0.05)

    with caplog.at_level(logging.WARNING, logger=outbox_retention.__name__):
        await run_for(pruner, 0.2)

    failed = logged(caplog, "outbox_prune_failed")
    assert len(failed) >= 2


def test_keep_days_setting() -> None:
    assert config.from_env({}).outbox_keep_days == 30.0
    assert config.from_env({"TICKET_OUTBOX_KEEP_DAYS": "0"}).outbox_keep_days == 0.0
    for bad in ("-1", "nan", "inf", "1e10"):
        with pytest.raises(SettingsError, match="TICKET_OUTBOX_KEEP_DAYS"):
            config.from_env({"TICKET_OUTBOX_KEEP_DAYS": bad})
