"""NATS connections, typed request/reply, and the reply-side error boundary."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request

from shared import json_errors, messages, metrics

logger = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT", bound=messages.Message)
RequestT = TypeVar("RequestT", bound=messages.Message)

REQUEST_ID_HEADER = "Linkdesk-Request-Id"

ERROR_LOG_INTERVAL_SECONDS = 30.0
"""Shortest time between two `nats_error` log lines of one connection."""


class DependencyUnavailable(Exception):
    """A request to another service got no usable reply.

    `reason` is one of `no_responders`, `timeout`, `disconnected`,
    `error_reply` and `bad_reply`. None of them is about the request itself,
    so callers show "try again later", never "not found".
    """

    def __init__(self, subject: str, reason: str, detail: str = "") -> None:
        self.subject = subject
        self.reason = reason
        self.detail = detail
        super().__init__(f"request to {subject} failed: {reason} {detail}".strip())


async def connect(servers: list[str], service: str) -> Client:
    """Connect to NATS, retrying for ever in the background after the first
    success, and log every change of the connection state."""

    async def disconnected() -> None:
        logger.warning("nats disconnected", extra={"event": "nats_disconnected"})

    async def reconnected() -> None:
        logger.info("nats reconnected", extra={"event": "nats_reconnected"})

    # During an outage nats-py reports a failed reconnect every half second;
    # one line per interval with the count keeps the log readable.
    last_logged = -ERROR_LOG_INTERVAL_SECONDS
    suppressed = 0

    async def error(exc: Exception) -> None:
        nonlocal last_logged, suppressed
        now = time.monotonic()
        if now - last_logged < ERROR_LOG_INTERVAL_SECONDS:
            suppressed += 1
            return
        logger.warning(
            "nats error: %s",
            exc,
            extra={
                "event": "nats_error",
                "error": repr(exc),
                "suppressed_since_last": suppressed,
            },
        )
        last_logged, suppressed = now, 0

    return await nats.connect(
        servers=servers,
        name=f"linkdesk-{service}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        disconnected_cb=disconnected,
        reconnected_cb=reconnected,
        error_cb=error,
    )


async def request(
    nc: Client,
    subject: str,
    message: messages.Message,
    reply_type: type[ReplyT],
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> ReplyT:
    """Send `message` to `subject` and decode the reply as `reply_type`.

    Raises `DependencyUnavailable` when no service responds, the reply is late,
    the connection is down, or the reply is an error or cannot be decoded.
    Counts the request and its outcome in the metrics attached to `nc`.
    """
    started = time.perf_counter()
    try:
        decoded = await _request(nc, subject, message, reply_type, timeout, headers)
    except DependencyUnavailable as exc:
        _observe(nc, subject, exc.reason, started)
        raise
    _observe(nc, subject, "rejected" if _rejection(decoded) else "ok", started)
    return decoded


async def _request(
    nc: Client,
    subject: str,
    message: messages.Message,
    reply_type: type[ReplyT],
    timeout: float,
    headers: dict[str, str] | None,
) -> ReplyT:
    try:
        reply = await nc.request(
            subject, messages.ENCODER.encode(message), timeout=timeout, headers=headers
        )
    except nats.errors.NoRespondersError:
        raise DependencyUnavailable(subject, "no_responders") from None
    except nats.errors.TimeoutError:
        raise DependencyUnavailable(subject, "timeout", f"after {timeout} s") from None
    except (
        nats.errors.ConnectionClosedError,
        nats.errors.ConnectionDrainingError,
        nats.errors.ConnectionReconnectingError,
        nats.errors.StaleConnectionError,
        nats.errors.OutboundBufferLimitError,
    ) as exc:
        raise DependencyUnavailable(subject, "disconnected", repr(exc)) from None

    if reply.headers and ERROR_CODE_HEADER in reply.headers:
        detail = f"{reply.headers[ERROR_CODE_HEADER]} {reply.headers.get(ERROR_HEADER)}"
        raise DependencyUnavailable(subject, "error_reply", detail)
    try:
        return msgspec.json.decode(reply.data, type=reply_type)
    except json_errors.UNDECODABLE as exc:
        problem = json_errors.explain_decode_error(reply.data, exc)
        raise DependencyUnavailable(subject, "bad_reply", problem.message) from None


def _observe(nc: Client, subject: str, outcome: str, started: float) -> None:
    metrics.for_connection(nc).observe_request(
        subject, outcome, time.perf_counter() - started
    )


def _rejection(reply: messages.Message) -> str | None:
    """Return the `reason` of a reply that names why the request found
    nothing, such as `unknown_secret`, or None for any other reply."""
    reason = getattr(reply, "reason", None)
    return reason if isinstance(reason, str) and reason else None


def reply_handler(
    request_type: type[RequestT],
    handle: Callable[[RequestT], Awaitable[messages.Message]],
    service_metrics: metrics.Metrics | None = None,
) -> Callable[[Request], Awaitable[None]]:
    """Wrap `handle` as a nats.micro endpoint handler.

    This is the one error boundary of a request handler: a request that does
    not decode gets a `400` error reply naming the problem, an exception gets
    a `500` error reply and a log line, and neither reaches the caller as a
    regular answer. Every request gets one log line with the caller's request
    id: a reply that names a rejection reason at INFO, other replies at DEBUG.
    The request's content is never logged, because it can carry a secret.
    """

    def count(subject: str, outcome: metrics.HandledOutcome) -> None:
        if service_metrics is not None:
            service_metrics.count_handled(subject, outcome)

    async def endpoint(req: Request) -> None:
        request_id = (req.headers or {}).get(REQUEST_ID_HEADER, "")
        started = time.perf_counter()
        try:
            decoded = msgspec.json.decode(req.data, type=request_type)
        except json_errors.UNDECODABLE as exc:
            problem = json_errors.explain_decode_error(req.data, exc).message
            count(req.subject, "invalid_request")
            logger.warning(
                "invalid request: %s",
                problem,
                extra={
                    "event": "invalid_request",
                    "subject": req.subject,
                    "request_id": request_id,
                },
            )
            await req.respond_error(
                "400", f"invalid {request_type.__name__}: {problem}"
            )
            return
        try:
            result = await handle(decoded)
        except Exception:
            count(req.subject, "error")
            logger.exception(
                "request handler failed",
                extra={
                    "event": "handler_failed",
                    "subject": req.subject,
                    "request_id": request_id,
                },
            )
            await req.respond_error("500", "internal error, see the service log")
            return
        await req.respond(messages.ENCODER.encode(result))
        reason = _rejection(result)
        count(req.subject, "rejected" if reason else "ok")
        fields = {
            "subject": req.subject,
            "request_id": request_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        }
        if reason:
            logger.info(
                "request rejected: %s",
                reason,
                extra={"event": "request_rejected", "reason": reason, **fields},
            )
        else:
            logger.debug(
                "request answered", extra={"event": "request_answered", **fields}
            )

    return endpoint
