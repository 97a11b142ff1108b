"""Prometheus metrics of a service, in a registry of its own.

Each app builds one `Metrics` in its factory, so two apps in one process (as
in tests) never register a name twice, and serves it at `GET /metrics` in the
Prometheus text format 0.0.4. Every label takes its values from a fixed set
or from the code (route templates, request subjects): never a raw path, an
id, a personnel number or a secret, so the number of series stays bounded.
"""

from __future__ import annotations

import functools
import time
import weakref
from collections.abc import Iterable
from typing import Literal, get_args

from litestar import Litestar, Response, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from nats.aio.client import Client
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from shared import subjects

OTHER = "other"
"""Label value of anything outside a label's fixed set of values."""

UNMATCHED_ROUTE = "unmatched"
"""Route label of a request that matched no route (404, 405)."""

TEXT_FORMAT = "text/plain; version=0.0.4"
"""Media type of the Prometheus text format that `render()` writes. Litestar
adds `; charset=utf-8` to every `text/` type."""

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_SUBJECTS = frozenset(
    value
    for name, value in vars(subjects).items()
    if name.isupper()
    and isinstance(value, str)
    and value.startswith("linkdesk.v1.")
    and not any(wildcard in value for wildcard in "*>")
)
"""Subjects that may be label values: the fixed subjects in `shared.subjects`.
Per-tenant subjects come from functions there, so they count as `other`."""

NatsOutcome = Literal[
    "ok",
    "rejected",
    "no_responders",
    "timeout",
    "bad_reply",
    "error_reply",
    "disconnected",
]
"""Outcome of a request sent. `rejected` is a reply that names a reason, such
as an unknown secret, and the five after it are the reasons of
`DependencyUnavailable`."""

NATS_OUTCOMES = frozenset(get_args(NatsOutcome))

HandledOutcome = Literal["ok", "rejected", "invalid_request", "error"]
"""Outcome of a request this service handled. `invalid_request` did not
decode and got a 400 error reply, and `error` raised in the handler and got a
500 error reply."""

PublishOutcome = Literal[
    "ok", "duplicate", "too_large", "no_stream", "timeout", "api_error", "disconnected"
]
"""Outcome of a JetStream publish. `duplicate` is a repeated `Nats-Msg-Id`
that the stream dropped, and the four after `too_large` mean that JetStream
sent no acknowledgement."""

ConsumedOutcome = Literal["stored", "duplicate"]
RetryReason = Literal["database_unavailable", "tenant_service_unavailable", "failed"]
ParkReason = Literal["invalid_message", "delivery_limit"]


# In the text format 0.0.4, prometheus_client (0.26) writes a `_created`
# gauge beside every counter and histogram series, which doubles the series
# that Prometheus stores and that no alert here reads. The switch is
# process-wide.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else OTHER


class Metrics:
    """The metric families that every service has, and its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.http_request_duration = Histogram(
            "linkdesk_http_request_duration_seconds",
            "Time from an HTTP request's arrival to the end of its response, by "
            "method, route template and status. _count counts the requests.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._http_children: dict[tuple[str, str, int], Histogram] = {}
        self.nats_requests = Counter(
            "linkdesk_nats_requests",
            "NATS requests sent to another service, by subject and outcome.",
            ["subject", "outcome"],
            registry=self.registry,
        )
        self.nats_request_duration = Histogram(
            "linkdesk_nats_request_duration_seconds",
            "Time from sending a NATS request to its reply or failure, by subject.",
            ["subject"],
            registry=self.registry,
        )
        self.nats_requests_handled = Counter(
            "linkdesk_nats_requests_handled",
            "NATS requests this service handled, by subject and outcome.",
            ["subject", "outcome"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "linkdesk_events_published",
            "Events published to JetStream, by event type (the last subject "
            "token) and outcome.",
            ["event_type", "outcome"],
            registry=self.registry,
        )

    @functools.cached_property
    def consumer(self) -> ConsumerMetrics:
        """The ticket service's consumer families, registered on first use."""
        return ConsumerMetrics(self.registry)

    def render(self) -> bytes:
        """Return every family in the Prometheus text format 0.0.4."""
        return generate_latest(self.registry)

    def observe_http(
        self, method: str, route: str, status: int, seconds: float
    ) -> None:
        # Every request ends here, and looking up the labelled histogram cost
        # about as much as observing it. Methods, routes and statuses are few.
        key = (_bounded(method, HTTP_METHODS), route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self.http_request_duration.labels(key[0], route, str(status))
            self._http_children[key] = child
        child.observe(seconds)

    def observe_request(self, subject: str, outcome: str, seconds: float) -> None:
        """Count one NATS request sent and the time to its outcome."""
        subject = _bounded(subject, REQUEST_SUBJECTS)
        self.nats_requests.labels(subject, _bounded(outcome, NATS_OUTCOMES)).inc()
        self.nats_request_duration.labels(subject).observe(seconds)

    def count_handled(self, subject: str, outcome: HandledOutcome) -> None:
        self.nats_requests_handled.labels(
            _bounded(subject, REQUEST_SUBJECTS), outcome
        ).inc()

    def count_published(self, event_type: str, outcome: PublishOutcome) -> None:
        self.events_published.labels(
            _bounded(event_type, subjects.TICKET_EVENT_KINDS), outcome
        ).inc()

    def attach(self, nc: Client) -> None:
        """Count the requests, publishes and consumed messages that go through
        `nc` in these metrics."""
        _BY_CONNECTION[nc] = self


class ConsumerMetrics:
    """Families of the ticket service's submission consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumed = Counter(
            "linkdesk_submissions_consumed",
            "Submissions stored and acknowledged: stored made a new ticket, "
            "duplicate found the submission already stored.",
            ["outcome"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "linkdesk_submission_redeliveries",
            "Submission messages received more than once (JetStream's delivery "
            "count above 1).",
            registry=registry,
        )
        self.retries = Counter(
            "linkdesk_submission_retries",
            "Submission messages left unacknowledged for redelivery, by reason.",
            ["reason"],
            registry=registry,
        )
        self.parked = Counter(
            "linkdesk_messages_parked",
            "Messages stored in ticket.parked_messages and acknowledged, by reason.",
            ["reason"],
            registry=registry,
        )
        self.last_fetch = Gauge(
            "linkdesk_consumer_last_fetch_timestamp_seconds",
            "Unix time at which the last fetch from the durable consumer "
            "returned, with messages or empty.",
            registry=registry,
        )
        # Series that exist from the start, so that rate() and increase()
        # count their first increment.
        for outcome in get_args(ConsumedOutcome):
            self.consumed.labels(outcome)
        for reason in get_args(RetryReason):
            self.retries.labels(reason)
        for reason in get_args(ParkReason):
            self.parked.labels(reason)

    def count_consumed(self, outcome: ConsumedOutcome) -> None:
        self.consumed.labels(outcome).inc()

    def count_retry(self, reason: RetryReason) -> None:
        self.retries.labels(reason).inc()

    def count_parked(self, reason: ParkReason) -> None:
        self.parked.labels(reason).inc()


class LinkMetrics:
    """The gateway's count of links that opened nothing."""

    def __init__(self, registry: CollectorRegistry, reasons: Iterable[str]) -> None:
        self.reasons = frozenset(reasons)
        self.rejections = Counter(
            "linkdesk_link_rejections",
            "Links that opened nothing (the neutral 404 page), by reason.",
            ["reason"],
            registry=registry,
        )
        for reason in sorted(self.reasons):
            self.rejections.labels(reason)

    def count_rejection(self, reason: str) -> None:
        self.rejections.labels(_bounded(reason, self.reasons)).inc()


_BY_CONNECTION: weakref.WeakKeyDictionary[Client, Metrics] = weakref.WeakKeyDictionary()


@functools.cache
def _detached() -> Metrics:
    return Metrics()


def for_connection(nc: Client) -> Metrics:
    """Return the metrics attached to `nc`.

    Code that holds only the connection (request helpers, the consumer)
    counts into its app's registry this way. A connection without an app,
    as in a script, gets a registry that no endpoint serves.
    """
    return _BY_CONNECTION.get(nc) or _detached()


def route_label(scope: Scope, status: int) -> str:
    """Return the route label of a finished request: the route template, or
    `UNMATCHED_ROUTE` for a request that no route served.

    Litestar sets the template once a route matched. A 405 counts as
    unmatched even where a plain ASGI handler matched the path and then
    rejected the method, as Litestar's router does on its own routes.
    """
    if status == 405:
        return UNMATCHED_ROUTE
    return str(scope.get("path_template") or UNMATCHED_ROUTE)


def http_metrics_middleware(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """Time every HTTP request by method, route template and status."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_with_status)
        finally:
            metrics.observe_http(
                str(scope.get("method", "")),
                route_label(scope, status),
                status,
                time.perf_counter() - started,
            )

    return middleware


def instrument(app: Litestar, metrics: Metrics) -> None:
    """Count every HTTP request of `app`, those that match no route too.

    Litestar (2.x) runs an app's `middleware` only for requests that match a
    route, so 404 and 405 responses would go uncounted. The wrapper goes around
    the app's `asgi_handler` instead, which sees every request.
    """
    app.asgi_handler = http_metrics_middleware(app.asgi_handler, metrics)


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(state: State) -> Response[bytes]:
    """Serve the app's metrics in the Prometheus text format 0.0.4."""
    metrics: Metrics = state.metrics
    return Response(
        metrics.render(),
        media_type=TEXT_FORMAT,
        headers={"Cache-Control": "no-store"},
    )
