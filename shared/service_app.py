"""Build the Litestar app of a service that owns a schema and talks NATS.

The tenant, personnel and ticket services share this shape: an admin HTTP
API, health endpoints, Prometheus metrics, a pool with migrations, a NATS
connection, nats.micro request handlers in a queue group, and optionally a
background worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.datastructures import State
from litestar.types import ControllerRouterHandler
from nats.aio.client import Client
from nats.micro import add_service

from shared import (
    admin_api,
    admin_auth,
    health,
    lifecycle,
    messages,
    metrics,
    subjects,
)
from shared.messaging import reply_handler

Worker = Callable[[State, asyncpg.Pool, Client], AbstractAsyncContextManager[None]]
"""Runs beside the HTTP server for the app's lifetime (the ticket consumer)."""


@dataclass(frozen=True)
class Endpoint:
    """One NATS request/reply endpoint: decode `request_type`, call `handle`."""

    name: str
    subject: str
    request_type: type[messages.Message]
    handle: Callable[[asyncpg.Pool, Any], Awaitable[messages.Message]]


@dataclass(frozen=True)
class ServiceSpec:
    service: str
    schema: str
    package: str
    description: str
    controllers: Sequence[ControllerRouterHandler]
    endpoints: Sequence[Endpoint] = ()
    worker: Worker | None = None
    readiness: Callable[[State], Awaitable[dict[str, bool]]] | None = None
    version: str = field(default="1.0.0")


def _lifespan(
    spec: ServiceSpec,
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with (
            lifecycle.database_pool(
                app.state, spec.service, spec.schema, spec.package
            ) as pool,
            lifecycle.nats_connection(app.state, spec.service) as nc,
        ):
            service_metrics: metrics.Metrics = app.state.metrics
            service_metrics.attach(nc)
            micro = await add_service(
                nc,
                name=f"linkdesk-{spec.service}",
                version=spec.version,
                description=spec.description,
            )
            for endpoint in spec.endpoints:
                await micro.add_endpoint(
                    name=endpoint.name,
                    subject=endpoint.subject,
                    queue_group=subjects.QUEUE_GROUP,
                    handler=reply_handler(
                        endpoint.request_type,
                        partial(endpoint.handle, pool),
                        service_metrics,
                    ),
                )
            worker = spec.worker(app.state, pool, nc) if spec.worker else nullcontext()
            try:
                async with worker:
                    yield
            finally:
                await micro.stop()

    return lifespan


def _readiness(spec: ServiceSpec) -> health.ReadinessCheck:
    async def check(state: State) -> dict[str, bool]:
        nc = getattr(state, "nc", None)
        pool = getattr(state, "pool", None)
        checks = {
            "nats": bool(nc and nc.is_connected),
            "database": bool(pool and await lifecycle.database_ready(pool)),
        }
        if spec.readiness:
            checks.update(await spec.readiness(state))
        return checks

    return check


def create_app(spec: ServiceSpec) -> Litestar:
    """Build the ASGI app that `python -m services.<name>` serves."""
    service_metrics = metrics.Metrics()
    app = Litestar(
        route_handlers=[
            *spec.controllers,
            health.health_router(_readiness(spec)),
            metrics.metrics_endpoint,
        ],
        lifespan=[_lifespan(spec)],
        logging_config=None,
        state=State(
            {"admin_tokens": admin_auth.tokens_from_env(), "metrics": service_metrics}
        ),
        exception_handlers=admin_api.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        request_class=admin_api.JsonBodyRequest,
        openapi_config=admin_api.openapi_config(
            f"linkdesk {spec.service} admin API", spec.description
        ),
    )
    metrics.instrument(app, service_metrics)
    return app
