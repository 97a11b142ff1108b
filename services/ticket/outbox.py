"""Publish the outbox to JetStream: the only way ticket events leave the service.

Each event row is written in the transaction of the change it reports, so a
committed ticket always has its `created` row. The relay publishes unsent rows
in id order with the event id as `Nats-Msg-Id` and marks a row sent only after
JetStream acknowledged it. A crash between the acknowledgement and the mark
publishes the row again after the restart; JetStream drops that repeat when it
arrives within the stream's duplicate window (`TICKET_DUPLICATE_WINDOW_SECONDS`,
default 600).

Consecutive `created` events are sent without waiting for each
acknowledgement in turn, and every other event alone, so one ticket's events
reach the stream in order even when a publish fails.

While the consumer works through a backlog, the relay starts a round only
once per `TICKET_OUTBOX_POLL_SECONDS`, because both share one event loop and
one table, and storing the waiting submissions comes first. Events are held
back this way for at most `TICKET_OUTBOX_MAX_HOLD_SECONDS` after the oldest
unsent one was written, so a lasting overload delays them by a bounded time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import TypeAlias

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import PubAck

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

MIN_ROUND_INTERVAL = 0.01
"""Shortest time in seconds from the start of one round to the start of the
next. A round that found a full batch is followed at once."""

EXIT_CODE_AFTER_PUBLISH = 75
"""Exit code of the test-only crash after a publish."""


_Sent: TypeAlias = tuple[repository.OutboxRow, PubAck]
"""An outbox row and JetStream's acknowledgement of it."""
_Failed: TypeAlias = tuple[repository.OutboxRow, Exception]
"""An outbox row and the error that kept it from being acknowledged."""


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        config: TicketSettings,
        backlogged: Callable[[], bool] = lambda: False,
    ):
        """`backlogged` returns whether the consumer has a backlog to store."""
        self.pool = pool
        self.js = nc.jetstream(timeout=config.publish_timeout)
        self.metrics = metrics.for_connection(nc)
        self.config = config
        self.backlogged = backlogged
        self.last_round = 0.0
        self._oldest_unsent_at: float | None = None
        """When the oldest row of the last round was written, on the monotonic
        clock, or None when that round found no row."""
        self._holding = False
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """Whether a round finished within the last poll interval plus five seconds."""
        return time.monotonic() - self.last_round < self.config.outbox_poll_seconds + 5

    def wake(self) -> None:
        """Start the next round once MIN_ROUND_INTERVAL has passed since the
        last one started; called after a commit that wrote an event."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Publish rounds until `stop()`; survives NATS and database outages."""
        backoff = 0.5
        started = 0.0
        while not self._stopping.is_set():
            await self._give_way(started)
            self._wake.clear()
            started = time.monotonic()
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
            # Commits that wake the relay in quick succession would each get
            # a round of their own. Spacing the rounds out lets one round
            # publish the events of several commits.
            await asyncio.sleep(started + MIN_ROUND_INTERVAL - time.monotonic())

    def _hold_deadline(self) -> float | None:
        """Return when holding events back must end, on the monotonic clock,
        or None when no unsent row was seen in the last round."""
        if self._oldest_unsent_at is None:
            return None
        return self._oldest_unsent_at + self.config.outbox_max_hold

    def _should_hold(self) -> bool:
        if not self.config.outbox_max_hold or not self.backlogged():
            return False
        deadline = self._hold_deadline()
        return deadline is None or time.monotonic() < deadline

    async def _give_way(self, last_start: float) -> None:
        """While the consumer stores a backlog, wait until a poll interval has
        passed since the round that started at `last_start`, or until the
        oldest unsent event has been held back for the longest time allowed.

        Every commit of the consumer wakes the relay, so it notices the end
        of a backlog after the first batch that leaves none behind.
        """
        holding = self._should_hold()
        if self._holding and not holding and self.backlogged():
            logger.info(
                "outbox events held back for %.0f s, publishing them alongside "
                "the backlog",
                self.config.outbox_max_hold,
                extra={
                    "event": "outbox_hold_ended",
                    "max_hold_seconds": self.config.outbox_max_hold,
                },
            )
        self._holding = holding
        if not holding:
            return
        deadline = last_start + self.config.outbox_poll_seconds
        hold_deadline = self._hold_deadline()
        if hold_deadline is not None:
            deadline = min(deadline, hold_deadline)
        while self._should_hold() and not self._stopping.is_set():
            self._wake.clear()
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    await self._wake.wait()
            except TimeoutError:
                break

    async def publish_round(self) -> tuple[int, bool]:
        """Publish one batch of unsent rows in one transaction.

        Returns the number of rows sent, or -1 when a publish failed, and
        whether a full batch was found. After a failure the windows behind
        the failed row wait for the next round, which keeps the order.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            # A mark lost in a crash of PostgreSQL only publishes its row again,
            # which JetStream drops by its Nats-Msg-Id, so the round's commit
            # need not wait for the disk. The consumer's commits still do.
            # The outbox grows fast while a backlog drains, and a generic plan
            # made while it was small scans the whole table on every round,
            # so the round's statements are planned for their own arguments.
            if not await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)"
                " AND set_config('synchronous_commit', 'off', true) = 'off'"
                " AND set_config('plan_cache_mode', 'force_custom_plan', true)"
                " = 'force_custom_plan'",
                _RELAY_LOCK,
            ):
                return 0, False
            rows = await repository.lock_unsent(connection, self.config.outbox_batch)
            self._oldest_unsent_at = time.monotonic() - rows[0].waited if rows else None
            # Rows are marked sent in one statement at the end of the round.
            # The marks commit with the transaction either way, so marking
            # each row at once would change nothing but the cost.
            sent: list[_Sent] = []
            failed: list[_Failed] = []
            for window in _windows(rows):
                window_sent, failed = await self._publish_window(window)
                sent += window_sent
                if failed:
                    break
            await repository.record_send_failures(
                connection, [(row.id, repr(error)) for row, error in failed]
            )
            await repository.mark_sent(
                connection, [(row.id, int(ack.seq)) for row, ack in sent]
            )
        _log_round(sent, failed)
        if failed:
            return -1, False
        return len(sent), len(rows) == self.config.outbox_batch

    async def _publish_window(
        self, rows: list[repository.OutboxRow]
    ) -> tuple[list[_Sent], list[_Failed]]:
        """Publish rows without waiting between them, then collect every
        acknowledgement; return the rows sent and the rows that failed.

        NATS keeps the order of one connection's messages, so the rows reach
        the stream in id order. When a row fails, the rows after it in the
        window are on the stream before its retry, which is why `_windows`
        puts only rows of other tickets there.
        """
        pending: list[tuple[repository.OutboxRow, asyncio.Future[PubAck]]] = []
        failed: list[_Failed] = []
        for row in rows:
            try:
                future = await self.js.publish_async(
                    row.subject,
                    row.payload,
                    stream=subjects.TICKET_STREAM,
                    headers={"Nats-Msg-Id": str(row.event_id)},
                )
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                # The rows after this one were not sent and stay unsent.
                failed.append((row, exc))
                break
            pending.append((row, future))

        sent: list[_Sent] = []
        if pending:
            await asyncio.wait(
                [future for _, future in pending], timeout=self.config.publish_timeout
            )
        for row, future in pending:
            if not future.done() or future.cancelled():
                # Cancelling frees the future's place among nats-py's pending
                # asynchronous publishes.
                future.cancel()
                failed.append((row, nats.errors.TimeoutError()))
                continue
            try:
                ack = future.result()
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                failed.append((row, exc))
                continue
            if self.config.exit_after_outbox_publish:
                logger.error(
                    "exiting after publish as "
                    "TICKET_TEST_EXIT_AFTER_OUTBOX_PUBLISH asks",
                    extra={"event": "outbox_test_exit", "event_id": str(row.event_id)},
                )
                os._exit(EXIT_CODE_AFTER_PUBLISH)
            sent.append((row, ack))

        for row, ack in sent:
            self.metrics.count_published(
                _event_type(row.subject), "duplicate" if ack.duplicate else "ok"
            )
        for row, error in failed:
            self.metrics.count_published(_event_type(row.subject), _failure(error))
        failed.sort(key=lambda item: item[0].id)
        return sent, failed


def _windows(
    rows: list[repository.OutboxRow],
) -> Iterator[list[repository.OutboxRow]]:
    """Split rows, in id order, into windows that are published at once.

    A ticket has one `created` event, and its other events come after it, so
    consecutive `created` rows share a window: a failed row can then only be
    overtaken by events of other tickets. Every other row has a window of
    its own, which keeps each ticket's events in order on the stream.
    """
    window: list[repository.OutboxRow] = []
    for row in rows:
        if _event_type(row.subject) == "created":
            window.append(row)
            continue
        if window:
            yield window
            window = []
        yield [row]
    if window:
        yield window


def _log_round(sent: list[_Sent], failed: list[_Failed]) -> None:
    """Log one warning per distinct error of the round, and its publishes at
    DEBUG in one line."""
    by_error: dict[str, list[repository.OutboxRow]] = {}
    for row, exc in failed:
        by_error.setdefault(repr(exc), []).append(row)
    for error, rows in by_error.items():
        first = rows[0]
        logger.warning(
            "outbox publish failed for %d events, will retry",
            len(rows),
            extra={
                "event": "outbox_publish_failed",
                "outbox_id": first.id,
                "event_id": str(first.event_id),
                "subject": first.subject,
                "attempts": first.attempts + 1,
                "error": error,
                "outbox_ids": [row.id for row in rows],
            },
        )
    if sent and logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%d events published",
            len(sent),
            extra={
                "event": "outbox_published",
                "outbox_ids": [row.id for row, _ in sent],
                "event_ids": [str(row.event_id) for row, _ in sent],
                "stream_seqs": [int(ack.seq) for _, ack in sent],
                "duplicates": sum(1 for _, ack in sent if ack.duplicate),
            },
        )


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
