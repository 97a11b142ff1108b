"""Store ticket submissions from the durable JetStream consumer.

A message is acknowledged only after its transaction committed. A message
whose bytes are not a valid submission is parked in `ticket.parked_messages`
at once. A message that keeps failing for another reason, such as an unknown
tenant or a database error, is parked after `TICKET_PARK_AFTER_DELIVERIES`
deliveries. Parked messages are acknowledged, so the messages behind them
keep flowing.
While the database or the tenant service is unreachable nothing is
acknowledged and the loop backs off; JetStream keeps every message until it
is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.ticket import durable, repository
from services.ticket.config import TicketSettings
from services.ticket.tenants import TenantDirectory
from shared import events, messaging, metrics, streams, subjects

logger = logging.getLogger(__name__)

_decoder = msgspec.json.Decoder(events.TicketSubmitted)

# Errors that show the database is out of reach rather than that this message
# is wrong, so the message is retried without being parked.
_DATABASE_DOWN = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)


class InvalidSubmission(ValueError):
    """The message decodes but can never be stored as it is."""


def decode_submission(subject: str, data: bytes) -> events.TicketSubmitted:
    """Decode and check a message; raise InvalidSubmission naming the problem.

    Some msgspec versions raise UnicodeDecodeError rather than DecodeError for
    bytes that are not UTF-8 (0.23 raises DecodeError), so both count as
    undecodable.
    """
    try:
        event = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        msg = f"undecodable message: {exc}"
        raise InvalidSubmission(msg) from None
    for field in ("submission_id", "tenant_id"):
        value = getattr(event.data, field)
        try:
            uuid.UUID(value)
        except ValueError:
            msg = f"invalid data.{field} {value!r}: expected a UUID"
            raise InvalidSubmission(msg) from None
    try:
        event.data.submitted_at.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        msg = (
            f"invalid data.submitted_at {event.data.submitted_at.isoformat()!r}: "
            "out of the range of UTC times"
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


@contextlib.asynccontextmanager
async def working_on(msg: Msg, interval: float) -> AsyncIterator[None]:
    """Tell JetStream every `interval` seconds that `msg` is still being worked on.

    This resets the ack wait, so a slow insert or a lock wait does not get the
    message redelivered to another replica while this one still stores it.
    """

    async def heartbeat() -> None:
        while True:
            await asyncio.sleep(interval)
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
        self._stopping = asyncio.Event()

    @property
    def fetching(self) -> bool:
        """Whether a fetch returned within the last five seconds; an empty
        fetch counts only while NATS is connected."""
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
        """Fetch and store until `stop()`; survives NATS and database outages."""
        subscription = await self.js.pull_subscribe_bind(
            subjects.TICKET_STORE_CONSUMER, stream=subjects.TICKET_STREAM
        )
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                batch = await subscription.fetch(self.config.fetch_batch, timeout=1.0)
            except nats.errors.TimeoutError:
                # While NATS is down the pull request waits in the client's
                # buffer and times out too, which proves nothing.
                if self.nc.is_connected:
                    self._fetched()
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
            self._fetched()
            backoff = 0.5
            await self._handle_batch(batch)
        await subscription.unsubscribe()

    def _fetched(self) -> None:
        self.last_fetch = time.monotonic()
        self.metrics.last_fetch.set_to_current_time()

    async def _handle_batch(self, batch: list[Msg]) -> None:
        for msg in batch:
            try:
                async with working_on(msg, self.heartbeat_interval):
                    handled = await self.handle(msg)
            except Exception as exc:
                # A bug must not end the loop, and a message that triggers one
                # must not come back for ever: it counts as a failure and is
                # parked once it has failed often enough.
                logger.exception(
                    "unexpected error while storing a message",
                    extra={"event": "consumer_error", "subject": msg.subject},
                )
                await self._fail_after_error(msg, exc)
                continue
            if not handled:
                # A dependency is down: leave the rest of the batch to be
                # redelivered after ack_wait and pause before fetching.
                await asyncio.sleep(1.0)
                return

    async def handle(self, msg: Msg) -> bool:
        """Store, retry or park one message.

        Returns False when the database or the tenant service is unreachable,
        so the caller pauses.
        """
        sequence = msg.metadata.sequence.stream
        if msg.metadata.num_delivered > 1:
            self.metrics.redeliveries.inc()
        try:
            event = decode_submission(msg.subject, msg.data)
        except InvalidSubmission as exc:
            await self._park(msg, str(exc), "invalid_message")
            return True
        data = event.data
        ids = {
            "stream_seq": sequence,
            "tenant_id": data.tenant_id,
            "submission_id": data.submission_id,
            # The gateway's request that published the submission.
            "request_id": (msg.headers or {}).get(messaging.REQUEST_ID_HEADER, ""),
        }

        if self.tenants is not None:
            try:
                known = await self.tenants.exists(data.tenant_id)
            except messaging.DependencyUnavailable as exc:
                logger.warning(
                    "tenant service unavailable, message left for redelivery",
                    extra={"event": "tenant_check_retry", **ids, "error": str(exc)},
                )
                self.metrics.count_retry("tenant_service_unavailable")
                await msg.nak(delay=2.0)
                return False
            if not known:
                await self._failed(msg, f"unknown tenant {data.tenant_id}", ids)
                return True

        try:
            ticket = await repository.store_submission(
                self.pool, data, sequence, number_zone=self.config.number_zone
            )
        except _DATABASE_DOWN as exc:
            logger.warning(
                "database unreachable, message left for redelivery",
                extra={"event": "store_retry", **ids, "error": repr(exc)},
            )
            self.metrics.count_retry("database_unavailable")
            await msg.nak(delay=2.0)
            return False
        except asyncpg.DataError as exc:
            # The values themselves are unstorable (for example U+0000 in a
            # text column), so no redelivery can succeed.
            await self._park(msg, f"unstorable values: {exc!r}", "invalid_message")
            return True
        except (asyncpg.PostgresError, ValueError) as exc:
            await self._failed(msg, f"store failed: {exc!r}", ids)
            return True

        await msg.ack()
        if ticket is not None:
            self.on_stored()
        self.metrics.count_consumed("stored" if ticket else "duplicate")
        logger.log(
            logging.INFO if ticket else logging.DEBUG,
            "submission stored" if ticket else "submission already stored",
            extra={
                "event": "ticket_stored" if ticket else "ticket_duplicate",
                **ids,
                "ticket_id": ticket.id if ticket else None,
            },
        )
        return True

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
