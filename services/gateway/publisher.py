"""Publish submissions to JetStream and wait for the stream's acknowledgement."""

from __future__ import annotations

import asyncio
import logging
from typing import Literal, NamedTuple

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from shared import events, messages, metrics, subjects
from shared.messaging import REQUEST_ID_HEADER

logger = logging.getLogger(__name__)

PublishFailure = Literal["no_stream", "timeout", "api_error", "disconnected"]


class PublishFailed(Exception):
    """JetStream did not confirm that it stored the event."""

    def __init__(self, reason: PublishFailure, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"publish failed: {reason} {detail}".strip())


class PayloadTooLarge(Exception):
    """The encoded event is larger than the NATS server accepts."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"event of {size} bytes exceeds max_payload {limit}")


class Published(NamedTuple):
    """JetStream's acknowledgement of a submission."""

    sequence: int
    """The event's sequence in the stream; for a duplicate, the sequence of
    the event that JetStream stored first."""
    duplicate: bool
    """True when JetStream dropped the event as a repeat of a stored one."""


async def publish_submission(
    nc: Client, event: events.TicketSubmitted, *, timeout: float, request_id: str
) -> Published:
    """Publish `event` with its submission id as `Nats-Msg-Id`.

    A duplicate means that the same form was already accepted. Raises
    `PayloadTooLarge` or `PublishFailed`. Counts the outcome in the metrics
    attached to `nc`.
    """
    published = metrics.for_connection(nc)
    try:
        result = await _publish(nc, event, timeout=timeout, request_id=request_id)
    except PayloadTooLarge:
        published.count_published("submitted", "too_large")
        raise
    except PublishFailed as exc:
        published.count_published("submitted", exc.reason)
        raise
    published.count_published("submitted", "duplicate" if result.duplicate else "ok")
    return result


DUPLICATE_IN_PROCESS = 10158
"""JetStream's error code for a `Nats-Msg-Id` whose first publish a
replicated stream is still storing ("duplicate message id is in process")."""

RETRY_PAUSE_SECONDS = 0.01
"""Pause before publishing again a repeat that JetStream could not judge yet."""


async def _publish(
    nc: Client, event: events.TicketSubmitted, *, timeout: float, request_id: str
) -> Published:
    payload = messages.ENCODER.encode(event)
    if len(payload) > nc.max_payload:
        raise PayloadTooLarge(len(payload), nc.max_payload)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    retries = 0
    while True:
        try:
            published = await _publish_once(
                nc,
                event,
                payload,
                timeout=deadline - loop.time(),
                request_id=request_id,
            )
        except nats.js.errors.APIError as exc:
            # A replicated stream rejects a repeat that arrives while it still
            # stores the first publish. Once stored, the repeat is reported as
            # a duplicate, with the first event's sequence.
            in_process = exc.err_code == DUPLICATE_IN_PROCESS
            if not in_process or deadline - loop.time() <= RETRY_PAUSE_SECONDS:
                raise PublishFailed("api_error", str(exc)) from None
            retries += 1
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
            continue
        if retries:
            logger.info(
                "repeat published again until JetStream reported it as a duplicate",
                extra={
                    "event": "publish_repeated",
                    "retries": retries,
                    "submission_id": event.data.submission_id,
                    "request_id": request_id,
                },
            )
        return published


async def _publish_once(
    nc: Client,
    event: events.TicketSubmitted,
    payload: bytes,
    *,
    timeout: float,
    request_id: str,
) -> Published:
    """Publish once. Raises `PublishFailed` or `PayloadTooLarge` for every
    error except JetStream's API errors, which the caller handles."""
    try:
        ack = await nc.jetstream(timeout=timeout).publish(
            subjects.ticket_submitted(event.data.tenant_id),
            payload,
            headers={
                "Nats-Msg-Id": event.data.submission_id,
                REQUEST_ID_HEADER: request_id,
            },
            stream=subjects.TICKET_STREAM,
        )
    except nats.js.errors.NoStreamResponseError:
        raise PublishFailed("no_stream", "no stream answered") from None
    except nats.errors.TimeoutError:
        raise PublishFailed(
            "timeout", f"no acknowledgement after {timeout:.3g} s"
        ) from None
    except nats.errors.MaxPayloadError:
        raise PayloadTooLarge(len(payload), nc.max_payload) from None
    except nats.js.errors.APIError:
        raise
    except nats.errors.Error as exc:
        raise PublishFailed("disconnected", repr(exc)) from None
    return Published(sequence=ack.seq, duplicate=bool(ack.duplicate))
