"""Wire the gateway: public routes, NATS connection, health, metrics."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import get_args

import nats.errors
import nats.js.errors
from litestar import Litestar, Response
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from services.gateway import link, rate_limit, routes
from services.gateway import settings as gateway_settings
from services.gateway.accepted_form import AcceptedForms
from services.gateway.access import access_middleware
from services.gateway.directory import Directory
from services.gateway.duplicate_window import DuplicateWindow
from services.gateway.lookup_cache import (
    LookupCache,
    cache_ttl_from_env,
    subscribe_invalidations,
)
from services.gateway.pages import Pages
from shared import health, lifecycle, messages, metrics, subjects

logger = logging.getLogger(__name__)

SERVICE = "gateway"

LINK_REJECTION_REASONS = frozenset(get_args(link.Malformed)).union(
    *(
        get_args(value)
        for name, value in vars(messages).items()
        if name.endswith("Rejection")
    )
)
"""Every reason a link can open nothing for: the label values of
`linkdesk_link_rejections_total`. The reasons in replies are the `…Rejection`
types of `shared.messages`, so a new type there is labelled without a change
here."""


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    cache = LookupCache(cache_ttl_from_env())
    async with lifecycle.nats_connection(app.state, SERVICE) as nc:
        gateway_metrics: metrics.Metrics = app.state.metrics
        gateway_metrics.attach(nc)
        if cache.enabled:
            await subscribe_invalidations(nc, cache)
        logger.info(
            "lookup cache configured",
            extra={"event": "lookup_cache_configured", "ttl_seconds": cache.ttl},
        )
        app.state.directory = Directory(nc, app.state.settings.request_timeout, cache)
        app.state.duplicate_window = DuplicateWindow(
            nc, app.state.settings.request_timeout
        )
        app.state.accepted_forms = AcceptedForms(nc, app.state.settings.request_timeout)
        shared_state, limiter = rate_limit.build(
            nc, app.state.settings, gateway_metrics.registry
        )
        app.state.shared_state, app.state.rate_limiter = shared_state, limiter
        try:
            yield
        finally:
            # Before the connection drains: write the waiting submission counts.
            await limiter.close(timeout=4 * shared_state.timeout)


async def _readiness(state: State) -> dict[str, bool]:
    nc = getattr(state, "nc", None)
    connected = bool(nc and nc.is_connected)
    stream = False
    if nc and connected:
        try:
            await nc.jetstream(timeout=1.0).stream_info(subjects.TICKET_STREAM)
            stream = True
        except (nats.errors.Error, nats.js.errors.Error):
            stream = False
    return {"nats": connected, "stream": stream}


def _not_found(request: routes.AnyRequest, _: Exception) -> Response[bytes]:
    # Unknown public paths get the same neutral page as an invalid link.
    pages: Pages = request.app.state.pages
    return pages.not_found().to_response()


def _internal_error(request: routes.AnyRequest, exc: Exception) -> Response[bytes]:
    # Logged here because the app has no Litestar logging config; the reader
    # gets the multilingual "temporarily unavailable" page, never a traceback.
    logger.error(
        "unhandled error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"event": "unhandled_error"},
    )
    pages: Pages = request.app.state.pages
    page = pages.unavailable()
    page.status_code = 500
    return page.to_response()


def create_app() -> Litestar:
    """Build the gateway's ASGI app."""
    settings = gateway_settings.load()
    gateway_metrics = metrics.Metrics()
    app = Litestar(
        route_handlers=[
            routes.open_form,
            routes.submit,
            routes.confirmation,
            routes.stylesheet,
            health.health_router(_readiness),
            metrics.metrics_endpoint,
        ],
        lifespan=[_lifespan],
        logging_config=None,
        openapi_config=None,
        request_max_body_size=settings.max_body_bytes,
        state=State(
            {
                "settings": settings,
                "pages": Pages(),
                "metrics": gateway_metrics,
                "link_metrics": metrics.LinkMetrics(
                    gateway_metrics.registry, LINK_REJECTION_REASONS
                ),
            }
        ),
        exception_handlers={
            RequestEntityTooLarge: routes.request_too_large,
            NotFoundException: _not_found,
            500: _internal_error,
        },
    )
    # Around the app's handler rather than in its middleware, which Litestar
    # runs only for requests that match a route: so that it also logs and
    # counts a 404 or 405, and sets the request id before anything else runs.
    app.asgi_handler = access_middleware(app.asgi_handler, gateway_metrics)
    return app
