"""Publish submissions to JetStream and wait for the stream's acknowledgement."""

from __future__ import annotations

from typing import Literal, NamedTuple

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from shared import events, messages, metrics, subjects
from shared.messaging import REQUEST_ID_HEADER

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


async def _publish(
    nc: Client, event: events.TicketSubmitted, *, timeout: float, request_id: str
) -> Published:
    payload = messages.ENCODER.encode(event)
    if len(payload) > nc.max_payload:
        raise PayloadTooLarge(len(payload), nc.max_payload)
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
            "timeout", f"no acknowledgement after {timeout} s"
        ) from None
    except nats.errors.MaxPayloadError:
        raise PayloadTooLarge(len(payload), nc.max_payload) from None
    except nats.js.errors.APIError as exc:
        raise PublishFailed("api_error", str(exc)) from None
    except nats.errors.Error as exc:
        raise PublishFailed("disconnected", repr(exc)) from None
    return Published(sequence=ack.seq, duplicate=bool(ack.duplicate))
