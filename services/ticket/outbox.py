"""Publish the outbox to JetStream: the only way ticket events leave the service.

Each event row is written in the transaction of the change it reports, so a
committed ticket always has its `created` row. The relay publishes unsent rows
in id order with the event id as `Nats-Msg-Id` and marks a row sent only after
JetStream acknowledged it. A crash between the acknowledgement and the mark
publishes the row again after the restart; JetStream drops that repeat when it
arrives within the stream's duplicate window (`TICKET_DUPLICATE_WINDOW_SECONDS`,
default 600).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from services.ticket import repository
from services.ticket.config import TicketSettings
from shared import metrics, subjects

logger = logging.getLogger(__name__)

# Errors after which the relay retries the whole round later.
_DATABASE_DOWN = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)

_RELAY_LOCK = int.from_bytes(
    hashlib.sha256(b"linkdesk-ticket-outbox-relay").digest()[:8], "big", signed=True
)
"""Advisory lock key: one relay at a time across replicas keeps the order."""

EXIT_CODE_AFTER_PUBLISH = 75
"""Exit code of the test-only crash after a publish."""


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, nc: Client, config: TicketSettings):
        self.pool = pool
        self.js = nc.jetstream(timeout=config.publish_timeout)
        self.metrics = metrics.for_connection(nc)
        self.config = config
        self.last_round = 0.0
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """Whether a round finished within the last poll interval plus five seconds."""
        return time.monotonic() - self.last_round < self.config.outbox_poll_seconds + 5

    def wake(self) -> None:
        """Start the next round now; called after a commit that wrote an event."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Publish rounds until `stop()`; survives NATS and database outages."""
        backoff = 0.5
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                sent, more = await self.publish_round()
            except (*_DATABASE_DOWN, asyncpg.PostgresError) as exc:
                logger.warning(
                    "outbox round failed, retrying in %.1f s",
                    backoff,
                    extra={"event": "outbox_retry", "error": repr(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.last_round = time.monotonic()
            backoff = 0.5
            if more:
                continue
            if sent < 0:
                # Publishing failed: pause before the same row is tried again.
                await asyncio.sleep(1.0)
                continue
            try:
                async with asyncio.timeout(self.config.outbox_poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def publish_round(self) -> tuple[int, bool]:
        """Publish one batch of unsent rows in one transaction.

        Returns the number of rows sent (-1 when a publish failed, so later
        rows wait to keep the order) and whether a full batch was found.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK
            ):
                return 0, False
            rows = await repository.lock_unsent(connection, self.config.outbox_batch)
            # Rows are marked sent in one statement at the end of the round.
            # The marks commit with the transaction either way, so marking
            # each row at once would change nothing but the cost.
            sent: list[tuple[int, int]] = []
            failed = False
            for row in rows:
                stream_sequence = await self._publish(connection, row)
                if stream_sequence is None:
                    failed = True
                    break
                sent.append((row.id, stream_sequence))
            await repository.mark_sent(connection, sent)
        if failed:
            return -1, False
        return len(sent), len(rows) == self.config.outbox_batch

    async def _publish(
        self, connection: repository.Connection, row: repository.OutboxRow
    ) -> int | None:
        """Publish one row and return its stream sequence, or None after a failure."""
        try:
            ack = await self.js.publish(
                row.subject,
                row.payload,
                stream=subjects.TICKET_STREAM,
                headers={"Nats-Msg-Id": str(row.event_id)},
            )
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            self.metrics.count_published(_event_type(row.subject), _failure(exc))
            await repository.record_send_failure(connection, row.id, repr(exc))
            logger.warning(
                "outbox publish failed, will retry",
                extra={
                    "event": "outbox_publish_failed",
                    "outbox_id": row.id,
                    "event_id": str(row.event_id),
                    "subject": row.subject,
                    "attempts": row.attempts + 1,
                    "error": repr(exc),
                },
            )
            return None
        if self.config.exit_after_outbox_publish:
            logger.error(
                "exiting after publish as TICKET_TEST_EXIT_AFTER_OUTBOX_PUBLISH asks",
                extra={"event": "outbox_test_exit", "event_id": str(row.event_id)},
            )
            os._exit(EXIT_CODE_AFTER_PUBLISH)
        self.metrics.count_published(
            _event_type(row.subject), "duplicate" if ack.duplicate else "ok"
        )
        logger.debug(
            "event published" if not ack.duplicate else "event already on the stream",
            extra={
                "event": "outbox_published",
                "outbox_id": row.id,
                "event_id": str(row.event_id),
                "subject": row.subject,
                "stream_seq": ack.seq,
                "duplicate": bool(ack.duplicate),
            },
        )
        return int(ack.seq)


def _event_type(subject: str) -> str:
    # tickets.v1.<tenant id>.<kind>
    return subject.rsplit(".", 1)[-1]


def _failure(exc: Exception) -> metrics.PublishOutcome:
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return "no_stream"
    if isinstance(exc, nats.errors.TimeoutError):
        return "timeout"
    if isinstance(exc, nats.js.errors.APIError):
        return "api_error"
    return "disconnected"
