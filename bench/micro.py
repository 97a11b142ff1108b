"""Client-side baselines: NATS request/reply, JetStream publish, asyncpg inserts.

Each one runs in the benchmark's own process for a fixed count of operations
and stops early after `max_seconds`; it returns operations per second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import nats
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

BENCH_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_insert (id bigint GENERATED ALWAYS AS"
    " IDENTITY PRIMARY KEY, submission_id uuid NOT NULL UNIQUE, reference text,"
    " tenant_id uuid, personnel_number text, reporter_name text, category text,"
    " subject text, description text, location text, urgency text,"
    " language text, submitted_at timestamptz,"
    " stored_at timestamptz NOT NULL DEFAULT now(), stream_sequence bigint)"
)
INSERT = (
    "INSERT INTO bench_insert (submission_id, reference, tenant_id,"
    " personnel_number, reporter_name, category, subject, description,"
    " location, urgency, language, submitted_at, stream_sequence)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
)
INSERT_BATCH = 64
"""Rows per transaction in the batched insert, the ticket consumer's default
fetch batch (`TICKET_FETCH_BATCH`)."""


@dataclass(frozen=True)
class Rate:
    name: str
    operations: int
    seconds: float
    concurrency: int

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0


async def _drive(
    count: int,
    concurrency: int,
    max_seconds: float,
    operation: Callable[[], Awaitable[object]],
) -> tuple[int, float]:
    """Run `operation` `count` times from `concurrency` tasks; return the
    number done and the seconds taken."""
    done = 0
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker() -> None:
        nonlocal done
        while done < count and time.perf_counter() < deadline:
            done += 1
            await operation()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - started


async def nats_request_reply(
    nats_url: str, count: int, concurrency: int, max_seconds: float
) -> Rate:
    """Requests from one connection to a responder on another connection."""
    responder = await nats.connect(nats_url)
    requester = await nats.connect(nats_url)

    async def respond(msg: Msg) -> None:
        await msg.respond(b'{"found":true}')

    await responder.subscribe("bench.micro.echo", cb=respond)
    await responder.flush()

    async def request() -> None:
        await requester.request("bench.micro.echo", b"{}", timeout=2.0)

    done, seconds = await _drive(count, concurrency, max_seconds, request)
    await requester.close()
    await responder.close()
    return Rate("nats request/reply", done, seconds, concurrency)


async def jetstream_publish(
    nats_url: str, count: int, concurrency: int, max_seconds: float
) -> Rate:
    """Acknowledged publishes of a 600-byte message to a file stream."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH_PUBLISH", subjects=["bench.pub"]))
    payload = b"x" * 600

    async def publish() -> None:
        await js.publish("bench.pub", payload, stream="BENCH_PUBLISH")

    done, seconds = await _drive(count, concurrency, max_seconds, publish)
    await js.delete_stream("BENCH_PUBLISH")
    await nc.close()
    return Rate("JetStream publish", done, seconds, concurrency)


def _row(sequence: int) -> tuple[object, ...]:
    return (
        uuid.uuid4(),
        "T-00000-00000",
        uuid.UUID(int=1),
        "004711",
        "Jörg Bäcker",
        "IT",
        "Drucker im 2. Stock druckt nicht",
        "Seit heute Morgen kommt nur leeres Papier heraus. " * 4,
        "Raum 204",
        "normal",
        "de",
        dt.datetime.now(dt.UTC),
        sequence,
    )


async def asyncpg_inserts(
    database_url: str, count: int, batch: int, max_seconds: float
) -> Rate:
    """Insert ticket-sized rows from one connection, `batch` rows per
    transaction (1: one autocommitted INSERT per row)."""
    connection = await asyncpg.connect(database_url)
    await connection.execute(BENCH_TABLE)
    done = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    while done < count and time.perf_counter() < deadline:
        rows = [_row(done + i) for i in range(batch)]
        if batch == 1:
            await connection.execute(INSERT, *rows[0])
        else:
            async with connection.transaction():
                await connection.executemany(INSERT, rows)
        done += batch
    seconds = time.perf_counter() - started
    await connection.execute("DROP TABLE bench_insert")
    await connection.close()
    name = (
        "asyncpg insert, one per transaction"
        if batch == 1
        else (f"asyncpg insert, {batch} per transaction")
    )
    return Rate(name, done, seconds, 1)


async def run_all(
    nats_url: str, database_url: str, count: int, max_seconds: float
) -> list[Rate]:
    return [
        await nats_request_reply(nats_url, count, 1, max_seconds),
        await nats_request_reply(nats_url, count, 64, max_seconds),
        await jetstream_publish(nats_url, count, 1, max_seconds),
        await jetstream_publish(nats_url, count, 64, max_seconds),
        await asyncpg_inserts(database_url, count, 1, max_seconds),
        await asyncpg_inserts(database_url, count * 2, INSERT_BATCH, max_seconds),
    ]
