"""The other end of the minimal chain: two NATS responders and a consumer.

    python -m bench.chain_worker NATS_URL DATABASE_URL

The consumer fetches up to 64 messages, inserts them with asyncpg in one
transaction and acknowledges them after the commit.
"""

from __future__ import annotations

import asyncio
import os
import signal

import asyncpg
import msgspec
import nats
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bench.apps import (
    CHAIN_CONSUMER,
    CHAIN_STREAM,
    CHAIN_SUBJECT,
    LOOKUP_SUBJECTS,
    Submission,
)

FETCH_BATCH = 64
TABLE = "bench_chain"

CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint GENERATED ALWAYS AS"
    " IDENTITY PRIMARY KEY, tenant text, person text, subject text,"
    " description text, stored_at timestamptz NOT NULL DEFAULT now())"
)


async def _respond(msg: Msg) -> None:
    await msg.respond(b'{"found":true}')


async def main(nats_url: str, database_url: str) -> None:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=CHAIN_STREAM, subjects=[CHAIN_SUBJECT]))
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    await pool.execute(CREATE_TABLE)
    for subject in LOOKUP_SUBJECTS:
        await nc.subscribe(subject, cb=_respond)
    subscription = await js.pull_subscribe(CHAIN_SUBJECT, durable=CHAIN_CONSUMER)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    decoder = msgspec.json.Decoder(Submission)
    print("chain worker ready", flush=True)
    while not stop.is_set():
        try:
            batch = await subscription.fetch(FETCH_BATCH, timeout=0.5)
        except (nats.errors.TimeoutError, TimeoutError):
            continue
        rows = []
        for msg in batch:
            item = decoder.decode(msg.data)
            rows.append((item.tenant, item.person, item.subject, item.description))
        async with pool.acquire() as connection, connection.transaction():
            await connection.executemany(
                f"INSERT INTO {TABLE} (tenant, person, subject, description)"
                " VALUES ($1, $2, $3, $4)",
                rows,
            )
        for msg in batch:
            await msg.ack()
    await nc.drain()
    await pool.close()


if __name__ == "__main__":
    # From the environment, not the command line, which every local user can
    # read in /proc: a database URL may carry a password.
    asyncio.run(main(os.environ["NATS_URL"], os.environ["DATABASE_URL"]))
