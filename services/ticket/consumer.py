"""Store ticket submissions from the durable JetStream consumer.

Each fetched batch is stored in one transaction, and its messages are
acknowledged only after the commit. A submission that cannot be stored is
rolled back to a savepoint, so the others in its batch are still stored.
A message whose bytes are not a valid submission is parked in
`ticket.parked_messages` at once, and so is one whose values PostgreSQL
rejects as invalid data. A message that keeps failing for another reason,
such as an unknown tenant or another database error, is parked after
`TICKET_PARK_AFTER_DELIVERIES` deliveries. Parked messages are acknowledged,
so the messages behind them keep flowing.
While the database or the tenant service is unreachable nothing is
acknowledged and the loop backs off; JetStream keeps every message until it
is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import asyncpg
import msgspec
import nats.errors
from asyncpg.pool import PoolConnectionProxy
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.ticket import durable, pull, repository
from services.ticket.config import TicketSettings
from services.ticket.tenants import TenantDirectory
from shared import events, json_errors, messaging, metrics, streams, subjects

logger = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(events.TicketSubmitted)
_UTC = zoneinfo.ZoneInfo("UTC")

_RELEASE_ERRORS: tuple[type[Exception], ...] = (
    *repository.DATABASE_DOWN,
    asyncpg.PostgresError,
)
"""Errors that releasing a connection to the pool can raise. The pool then
closes the connection."""


class InvalidSubmission(ValueError):
    """The message decodes but can never be stored as it is."""


def decode_submission(
    subject: str, data: bytes, number_zone: zoneinfo.ZoneInfo = _UTC
) -> events.TicketSubmitted:
    """Decode and check a message; raise InvalidSubmission naming the problem.

    `number_zone` is the time zone of the year in ticket numbers, in which
    the submission time must exist too.
    """
    try:
        event = _decoder.decode(data)
    except json_errors.UNDECODABLE as exc:
        problem = json_errors.explain_decode_error(data, exc)
        msg = f"undecodable message: {problem.message}"
        raise InvalidSubmission(msg) from None
    for field in ("submission_id", "tenant_id"):
        value = getattr(event.data, field)
        try:
            uuid.UUID(value)
        except ValueError:
            msg = f"invalid data.{field} {value!r}: expected a UUID"
            raise InvalidSubmission(msg) from None
    for zone in (_UTC, number_zone):
        try:
            event.data.submitted_at.astimezone(zone)
        except (OverflowError, ValueError):
            msg = (
                f"invalid data.submitted_at {event.data.submitted_at.isoformat()!r}: "
                f"out of the range of times in {zone.key}"
            )
            raise InvalidSubmission(msg) from None
    # Subscribers are limited to a tenant by the subject, so a message must
    # never carry another tenant's ticket than its subject names.
    expected = subjects.ticket_submitted(event.data.tenant_id)
    if subject != expected:
        msg = (
            f"data.tenant_id {event.data.tenant_id!r} does not match the subject "
            f"{subject!r}, expected subject {expected!r}"
        )
        raise InvalidSubmission(msg)
    return event


async def _nak_quietly(messages: list[Msg]) -> None:
    """Ask for a redelivery of `messages` in two seconds; a NATS outage is
    ignored here because JetStream then redelivers after the ack wait."""
    for msg in messages:
        with contextlib.suppress(nats.errors.Error, OSError):
            await msg.nak(delay=2.0)


@contextlib.asynccontextmanager
async def working_on(
    messages: Callable[[], list[Msg]], interval: float
) -> AsyncIterator[None]:
    """Tell JetStream every `interval` seconds that each message that
    `messages()` returns and that is not yet acknowledged or rejected is
    still being worked on.

    This resets their ack wait, so a slow insert or a lock wait does not get
    them redelivered to another replica while this one still stores them.
    """

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(interval)
            for msg in messages():
                if msg.is_acked:
                    continue
                try:
                    await msg.in_progress()
                except (nats.errors.Error, OSError) as exc:
                    logger.debug(
                        "in-progress signal failed",
                        extra={"event": "in_progress_failed", "error": repr(exc)},
                    )

    task = asyncio.create_task(heartbeat(), name="ticket-in-progress")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _Turn:
    """A batch's place in line for its ticket numbers.

    A batch takes its numbers only after the batch fetched before it is
    stored or given up, so a tenant's numbers follow the stream order even
    while the next batch is prepared beside the one in the database.
    """

    def __init__(self, stored_before: asyncio.Event | None) -> None:
        self._stored_before = stored_before
        self.stored = asyncio.Event()
        """Set once this batch is stored, or once its handling has ended."""

    async def wait(self) -> None:
        if self._stored_before is not None:
            await self._stored_before.wait()


STORED_LOG_CHUNK = 64
"""Tickets listed per `tickets_stored` log line at most, which keeps a line
below about 10 KB."""


@dataclass(frozen=True)
class _Delivery:
    """A fetched message that decoded to a valid submission."""

    msg: Msg
    sequence: int
    """The message's stream sequence."""
    data: events.TicketSubmittedData
    ids: dict[str, object]
    """Log fields that identify the message and the submission."""


class SubmissionConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        nc: Client,
        config: TicketSettings,
        tenants: TenantDirectory | None,
        on_stored: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.nc = nc
        self.js = nc.jetstream()
        self.config = config
        self.tenants = tenants
        self.on_stored = on_stored
        self.metrics = metrics.for_connection(nc).consumer
        self.consumer = durable.consumer_config()
        assert self.consumer.ack_wait is not None
        self.heartbeat_interval = max(self.consumer.ack_wait / 3, 0.2)
        self.last_fetch = 0.0
        self._backoff = 0.5
        self._in_hand: list[Msg] = []
        """Messages taken from the puller and not yet handled, which the
        heartbeat covers together with the puller's buffer."""
        self._idle_connections: list[PoolConnectionProxy[asyncpg.Record]] = []
        """Connections kept between batches: at most one per batch in hand."""
        self._stopping = asyncio.Event()
        self.backlogged = False
        """Whether at least one more full batch waited on the server when the
        last batch was taken, read by the outbox relay to give way. False
        after an empty batch and after a batch that could not be stored."""

    @property
    def fetching(self) -> bool:
        """Whether, within the last five seconds, messages were taken or a
        pull request expired on the server without an error."""
        return time.monotonic() - self.last_fetch < 5.0

    async def setup(self) -> None:
        """Create or update the stream and the durable consumer.

        Raises durable.ConsumerMismatch when the server's consumer differs in
        a setting that the service does not change.
        """
        await streams.ensure_ticket_stream(self.js)
        await durable.ensure_consumer(self.js, subjects.TICKET_STREAM, self.consumer)

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Fetch and store until `stop()`; survives NATS and database outages.

        Messages keep arriving while a batch is stored, so NATS and
        PostgreSQL work at the same time, and the next batch takes all of
        them. After a full batch, which shows a backlog, two batches are in
        hand at most. While one is in the database, the next is decoded and
        checked, and it waits with a connection of its own. It takes its
        ticket numbers only once the one before is stored or given up
        (`_Turn`). The acknowledgements of one batch go out while the next
        is stored.
        """
        puller = pull.Puller(
            self.nc,
            subjects.TICKET_STREAM,
            subjects.TICKET_STORE_CONSUMER,
            batch=self.config.fetch_batch,
            on_answer=self._fetched,
        )
        await puller.start()
        in_flight: asyncio.Task[None] | None = None
        try:
            async with working_on(
                lambda: [*self._in_hand, *puller.buffered], self.heartbeat_interval
            ):
                stored_before: asyncio.Event | None = None
                while not self._stopping.is_set():
                    batch = await self._fetch(puller)
                    turn = _Turn(stored_before)
                    stored_before = turn.stored
                    previous, in_flight = (
                        in_flight,
                        asyncio.create_task(
                            self._handle_batch(batch, turn), name="ticket-store-batch"
                        ),
                    )
                    if previous is not None:
                        await previous
                    if len(batch) < self.config.fetch_batch:
                        # No backlog: the next batch waits for this one, and
                        # meanwhile gathers more submissions, so a steady
                        # flow costs PostgreSQL fewer statements per ticket.
                        await in_flight
                if in_flight is not None:
                    await in_flight
        finally:
            if in_flight is not None and not in_flight.done():
                in_flight.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await in_flight
            with contextlib.suppress(nats.errors.Error, OSError):
                await puller.stop()
            # Stopped before these were stored (the stop timed out, or they
            # arrived after the last batch): hand them back so that another
            # replica gets them without the ack wait.
            pending = [
                msg for msg in [*self._in_hand, *puller.buffered] if not msg.is_acked
            ]
            await _nak_quietly(pending)
            await self._release_idle_connections()

    async def _fetch(self, puller: pull.Puller) -> list[Msg]:
        """Return the next batch; return no messages after a second without
        any or after a failure."""
        try:
            batch = await puller.next_batch(timeout=1.0, gather=self.config.batch_wait)
        except (pull.PullFailed, nats.errors.Error, OSError) as exc:
            logger.warning(
                "fetch failed, retrying in %.1f s",
                self._backoff,
                extra={"event": "fetch_retry", "error": repr(exc)},
            )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, 5.0)
            return []
        self._in_hand.extend(batch)
        return batch

    def _fetched(self) -> None:
        self.last_fetch = time.monotonic()
        self.metrics.last_fetch.set_to_current_time()
        self._backoff = 0.5

    async def _handle_batch(self, batch: list[Msg], turn: _Turn) -> None:
        # A stored batch ends its turn early. Otherwise the turn ends here:
        # after a failure and its pause, or after a one-at-a-time pass.
        try:
            await self._handle_batch_in_turn(batch, turn)
        finally:
            turn.stored.set()

    async def _handle_batch_in_turn(self, batch: list[Msg], turn: _Turn) -> None:
        if not batch:
            self.backlogged = False
            return
        self.backlogged = batch[-1].metadata.num_pending >= self.config.fetch_batch
        for msg in batch:
            if msg.metadata.num_delivered > 1:
                self.metrics.redeliveries.inc()
        cancelled = False
        try:
            handled = await self._store_batch(batch, turn, end_turn=True)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except Exception:
            # A bug must not end the loop. Storing the messages one at a time
            # confines the failure to the message that triggers it.
            logger.exception(
                "unexpected error while storing a batch, "
                "storing its messages one at a time",
                extra={"event": "consumer_error", "messages": len(batch)},
            )
            handled = await self._store_one_at_a_time(
                [msg for msg in batch if not msg.is_acked], turn
            )
        finally:
            # Messages neither acknowledged nor rejected here are
            # redelivered after the ack wait. On a stop, `run` hands back the
            # ones still in hand instead, so they come back at once.
            handled_ids = {id(msg) for msg in batch}
            self._in_hand[:] = [
                msg
                for msg in self._in_hand
                if id(msg) not in handled_ids or (cancelled and not msg.is_acked)
            ]
        if not handled:
            # A dependency is down: pause before storing the next batch. The
            # relay need not give way to a backlog that is not being stored.
            self.backlogged = False
            await asyncio.sleep(1.0)

    async def _store_one_at_a_time(self, messages: list[Msg], turn: _Turn) -> bool:
        for msg in messages:
            try:
                handled = await self._store_batch([msg], turn, end_turn=False)
            except Exception as exc:
                # A message that triggers a bug must not come back for ever:
                # it counts as a failure and is parked once it has failed
                # often enough.
                logger.exception(
                    "unexpected error while storing a message",
                    extra={
                        "event": "consumer_error",
                        "subject": msg.subject,
                        "stream_seq": msg.metadata.sequence.stream,
                    },
                )
                await self._fail_after_error(msg, exc)
                continue
            if not handled:
                # A dependency is down: hand the rest back for a prompt
                # redelivery instead of leaving it to the ack wait.
                await _nak_quietly(messages[messages.index(msg) + 1 :])
                return False
        return True

    async def _store_batch(
        self, batch: list[Msg], turn: _Turn, *, end_turn: bool
    ) -> bool:
        """Store, retry or park every message of a batch.

        Returns False when the database or the tenant service is unreachable,
        so the caller pauses. With `end_turn`, the turn ends as soon as the
        batch is stored, before its messages are acknowledged.
        """
        deliveries: list[_Delivery] = []
        for msg in batch:
            try:
                event = decode_submission(
                    msg.subject, msg.data, self.config.number_zone
                )
            except InvalidSubmission as exc:
                await self._park(msg, str(exc), "invalid_message")
                continue
            data = event.data
            sequence = msg.metadata.sequence.stream
            ids: dict[str, object] = {
                "stream_seq": sequence,
                "tenant_id": data.tenant_id,
                "submission_id": data.submission_id,
                # The gateway's request that published the submission.
                "request_id": (msg.headers or {}).get(messaging.REQUEST_ID_HEADER, ""),
            }
            deliveries.append(_Delivery(msg, sequence, data, ids))
        deliveries, tenants_reachable = await self._check_tenants(deliveries)
        if not deliveries:
            return tenants_reachable
        database_reachable = await self._store(deliveries, turn, end_turn=end_turn)
        return tenants_reachable and database_reachable

    async def _check_tenants(
        self, deliveries: list[_Delivery]
    ) -> tuple[list[_Delivery], bool]:
        """Return the deliveries whose tenant exists, and whether the tenant
        service was reachable.

        The others are left for redelivery (tenant service unreachable) or
        count as failed (unknown tenant). The tenant service is asked once
        per tenant of the batch, all at once, and not at all for tenants
        found before.
        """
        if self.tenants is None:
            return deliveries, True
        known, unavailable = await self.tenants.check(
            delivery.data.tenant_id for delivery in deliveries
        )
        checked: list[_Delivery] = []
        for delivery in deliveries:
            tenant_id = delivery.data.tenant_id
            if tenant_id not in known:
                logger.warning(
                    "tenant service unavailable, message left for redelivery",
                    extra={
                        "event": "tenant_check_retry",
                        **delivery.ids,
                        "error": str(unavailable),
                    },
                )
                self.metrics.count_retry("tenant_service_unavailable")
                await delivery.msg.nak(delay=2.0)
            elif not known[tenant_id]:
                await self._failed(
                    delivery.msg, f"unknown tenant {tenant_id}", delivery.ids
                )
            else:
                checked.append(delivery)
        return checked, unavailable is None

    async def _store(
        self, deliveries: list[_Delivery], turn: _Turn, *, end_turn: bool
    ) -> bool:
        """Store the submissions in one transaction, then acknowledge, retry
        or park each message.

        Returns False, after rejecting every message for redelivery, when the
        database is unreachable.
        """
        batch = repository.prepare_batch(
            [
                repository.Submission(delivery.data, delivery.sequence)
                for delivery in deliveries
            ],
            number_zone=self.config.number_zone,
        )
        connection: PoolConnectionProxy[asyncpg.Record] | None = None
        try:
            connection = await self._take_connection()
            await turn.wait()
            results = await repository.store_batch(
                connection, batch, ended=turn.stored.set if end_turn else None
            )
        except repository.DATABASE_DOWN as exc:
            await self._release(connection)
            logger.warning(
                "database unreachable, %d messages left for redelivery",
                len(deliveries),
                extra={
                    "event": "store_retry",
                    "stream_seq": deliveries[0].sequence,
                    "last_stream_seq": deliveries[-1].sequence,
                    "error": repr(exc),
                },
            )
            for delivery in deliveries:
                self.metrics.count_retry("database_unavailable")
                await delivery.msg.nak(delay=2.0)
            return False
        except BaseException:
            await self._release(connection)
            raise
        self._idle_connections.append(connection)

        stored: list[tuple[_Delivery, repository.Ticket]] = []
        for delivery, result in zip(deliveries, results, strict=True):
            if isinstance(result, asyncpg.DataError):
                # The values themselves are unstorable (for example U+0000 in
                # a text column), so no redelivery can succeed.
                await self._park(
                    delivery.msg, f"unstorable values: {result!r}", "invalid_message"
                )
            elif isinstance(result, Exception):
                await self._failed(
                    delivery.msg, f"store failed: {result!r}", delivery.ids
                )
            elif result is None:
                await delivery.msg.ack()
                self.metrics.count_consumed("duplicate")
                # This is a redelivery after a crash, a replayed parked message
                # or a form posted again after the duplicate window, so
                # operators see it in the log.
                logger.info(
                    "submission already stored, message acknowledged",
                    extra={"event": "ticket_duplicate", **delivery.ids},
                )
            else:
                await delivery.msg.ack()
                self.metrics.count_consumed("stored")
                stored.append((delivery, result))
        if stored:
            _log_stored(stored)
            self.on_stored()
        return True

    async def _take_connection(self) -> PoolConnectionProxy[asyncpg.Record]:
        """Return a kept connection, or one newly acquired from the pool."""
        if self._idle_connections:
            return self._idle_connections.pop()
        return await self.pool.acquire()

    async def _release(
        self, connection: PoolConnectionProxy[asyncpg.Record] | None
    ) -> None:
        """Return a connection to the pool, which closes it if broken."""
        if connection is None:
            return
        try:
            await self.pool.release(connection)
        except _RELEASE_ERRORS as exc:
            logger.debug(
                "releasing the database connection failed",
                extra={"event": "connection_release_failed", "error": repr(exc)},
            )

    async def _release_idle_connections(self) -> None:
        connections, self._idle_connections = self._idle_connections, []
        for connection in connections:
            await self._release(connection)

    async def _fail_after_error(self, msg: Msg, exc: Exception) -> None:
        ids: dict[str, object] = {"stream_seq": msg.metadata.sequence.stream}
        try:
            await self._failed(msg, f"unexpected error: {exc!r}", ids)
        except Exception:
            # Parking needs the database and NATS; if they fail too, JetStream
            # redelivers the message after ack_wait and this runs again.
            logger.exception(
                "could not record the failure of a message",
                extra={"event": "consumer_error", **ids},
            )

    async def _failed(self, msg: Msg, error: str, ids: dict[str, object]) -> None:
        """Park a message that failed often enough, else ask for redelivery.

        The count is JetStream's delivery count, which includes deliveries
        during an outage, so parking may come sooner after a long outage.
        """
        deliveries = msg.metadata.num_delivered
        if deliveries >= self.config.park_after:
            await self._park(
                msg, f"failed {deliveries} times, last: {error}", "delivery_limit"
            )
            return
        logger.warning(
            "message failed, will retry: %s",
            error,
            extra={"event": "store_failed", **ids, "deliveries": deliveries},
        )
        self.metrics.count_retry("failed")
        await msg.nak(delay=1.0)

    async def _park(self, msg: Msg, error: str, reason: metrics.ParkReason) -> None:
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
        except repository.DATABASE_DOWN as exc:
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
        self.metrics.count_parked(reason)
        logger.error(
            "message parked: %s",
            error[:500],
            extra={
                "event": "message_parked",
                "stream_seq": sequence,
                "subject": msg.subject,
                "deliveries": msg.metadata.num_delivered,
            },
        )


def _log_stored(stored: list[tuple[_Delivery, repository.Ticket]]) -> None:
    """Log the tickets stored from one batch, in lines of STORED_LOG_CHUNK.

    Entry i of each list belongs to the same ticket.
    """
    for start in range(0, len(stored), STORED_LOG_CHUNK):
        chunk = stored[start : start + STORED_LOG_CHUNK]
        logger.info(
            "%d submissions stored",
            len(chunk),
            extra={
                "event": "tickets_stored",
                "count": len(chunk),
                "ticket_ids": [ticket.id for _, ticket in chunk],
                "stream_seqs": [delivery.sequence for delivery, _ in chunk],
                "tenant_ids": [delivery.data.tenant_id for delivery, _ in chunk],
                "submission_ids": [
                    delivery.data.submission_id for delivery, _ in chunk
                ],
                "request_ids": [delivery.ids["request_id"] for delivery, _ in chunk],
            },
        )
