"""Store ticket submissions from the durable JetStream consumer.

A message is acknowledged only after its transaction committed. A message
that cannot be decoded, or that keeps failing for another reason than an
unreachable database, is parked in `ticket.parked_messages` and then
acknowledged, so the messages behind it keep flowing. While the database is
unreachable nothing is acknowledged and the loop backs off; JetStream keeps
every message until it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import msgspec
import nats.errors
from litestar.datastructures import State
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.ticket import repository
from shared import events, streams, subjects
from shared.settings import env_float, env_int

logger = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(events.TicketSubmitted)

# Errors that say the database is out of reach rather than that this message
# is wrong; the message is retried without counting towards parking.
_DATABASE_DOWN = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)


def consumer_config() -> ConsumerConfig:
    """The durable consumer as this release expects it.

    `max_deliver` is unlimited on purpose: parking is decided here, so that a
    database outage of any length never makes JetStream give up on a message.
    """
    return ConsumerConfig(
        durable_name=subjects.TICKET_STORE_CONSUMER,
        description="ticket service: store submissions in PostgreSQL",
        filter_subject=subjects.TICKET_SUBMITTED_WILDCARD,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=env_float("TICKET_ACK_WAIT_SECONDS", 30.0, minimum=1.0),
        max_deliver=-1,
        max_ack_pending=env_int("TICKET_MAX_ACK_PENDING", 1000, minimum=1),
    )


class SubmissionConsumer:
    def __init__(self, pool: asyncpg.Pool, nc: Client) -> None:
        self.pool = pool
        self.nc = nc
        self.js = nc.jetstream()
        self.batch = env_int("TICKET_FETCH_BATCH", 64, minimum=1)
        self.park_after = env_int("TICKET_PARK_AFTER_DELIVERIES", 5, minimum=1)
        self.last_fetch = 0.0
        self._stopping = asyncio.Event()

    @property
    def fetching(self) -> bool:
        """Whether a fetch returned within the last five seconds."""
        return time.monotonic() - self.last_fetch < 5.0

    async def setup(self) -> None:
        await streams.ensure_ticket_stream(self.js)
        await self.js.add_consumer(subjects.TICKET_STREAM, consumer_config())

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and store until `stop()`; survives NATS and database outages."""
        subscription = await self.js.pull_subscribe_bind(
            subjects.TICKET_STORE_CONSUMER, stream=subjects.TICKET_STREAM
        )
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                batch = await subscription.fetch(self.batch, timeout=1.0)
            except nats.errors.TimeoutError:
                self.last_fetch = time.monotonic()
                continue
            except (nats.errors.Error, OSError) as exc:
                logger.warning(
                    "fetch failed, retrying in %.1f s",
                    backoff,
                    extra={"event": "fetch_retry", "error": repr(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.last_fetch = time.monotonic()
            backoff = 0.5
            await self._handle_batch(batch)
        await subscription.unsubscribe()

    async def _handle_batch(self, batch: list[Msg]) -> None:
        for msg in batch:
            try:
                stored = await self.handle(msg)
            except Exception:
                # A bug must not end the loop: the message is redelivered
                # after ack_wait and parked once it has failed often enough.
                logger.exception(
                    "unexpected error while storing a message",
                    extra={"event": "consumer_error", "subject": msg.subject},
                )
                continue
            if not stored:
                # The database is down: leave the rest of the batch to be
                # redelivered after ack_wait and pause before fetching.
                await asyncio.sleep(1.0)
                return

    async def handle(self, msg: Msg) -> bool:
        """Store one message; return False when the database is unreachable."""
        sequence = msg.metadata.sequence.stream
        deliveries = msg.metadata.num_delivered
        try:
            event = _decoder.decode(msg.data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            await self._park(msg, f"undecodable message: {exc}")
            return True

        try:
            inserted = await repository.store_submission(
                self.pool, event.data, sequence
            )
        except _DATABASE_DOWN as exc:
            logger.warning(
                "database unreachable, message left for redelivery",
                extra={
                    "event": "store_retry",
                    "stream_seq": sequence,
                    "submission_id": event.data.submission_id,
                    "error": repr(exc),
                },
            )
            await msg.nak(delay=2.0)
            return False
        except (asyncpg.PostgresError, ValueError) as exc:
            if deliveries >= self.park_after:
                await self._park(msg, f"store failed {deliveries} times: {exc!r}")
            else:
                logger.warning(
                    "store failed, will retry",
                    extra={
                        "event": "store_failed",
                        "stream_seq": sequence,
                        "deliveries": deliveries,
                        "submission_id": event.data.submission_id,
                        "error": repr(exc),
                    },
                )
                await msg.nak(delay=1.0)
            return True

        await msg.ack()
        logger.debug(
            "submission stored" if inserted else "submission already stored",
            extra={
                "event": "ticket_stored" if inserted else "ticket_duplicate",
                "stream_seq": sequence,
                "tenant_id": event.data.tenant_id,
                "submission_id": event.data.submission_id,
            },
        )
        return True

    async def _park(self, msg: Msg, error: str) -> None:
        sequence = msg.metadata.sequence.stream
        try:
            await repository.park(
                self.pool,
                stream_sequence=sequence,
                subject=msg.subject,
                headers=dict(msg.headers or {}),
                data=msg.data,
                error=error[:2000],
                deliveries=msg.metadata.num_delivered,
            )
        except _DATABASE_DOWN as exc:
            logger.warning(
                "database unreachable, cannot park message",
                extra={
                    "event": "park_retry",
                    "stream_seq": sequence,
                    "error": repr(exc),
                },
            )
            await msg.nak(delay=2.0)
            return
        await msg.ack()
        logger.error(
            "message parked",
            extra={
                "event": "message_parked",
                "stream_seq": sequence,
                "subject": msg.subject,
                "error": error[:500],
            },
        )


@asynccontextmanager
async def run_consumer(
    state: State, pool: asyncpg.Pool, nc: Client
) -> AsyncIterator[None]:
    """Run the consumer for as long as the app runs; stop it before NATS drains."""
    consumer = SubmissionConsumer(pool, nc)
    await consumer.setup()
    state.consumer = consumer
    task = asyncio.create_task(consumer.run(), name="ticket-consumer")
    logger.info(
        "consumer started",
        extra={"event": "consumer_started", "consumer": subjects.TICKET_STORE_CONSUMER},
    )
    try:
        yield
    finally:
        consumer.stop()
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            task.cancel()
        logger.info("consumer stopped", extra={"event": "consumer_stopped"})
