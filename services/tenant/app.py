"""Wire the tenant service: admin HTTP API, NATS request handlers, lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from litestar import Litestar
from litestar.datastructures import State
from nats.micro import add_service

from services.tenant import api, lookup, repository
from shared import admin_api, admin_auth, health, lifecycle, messages, subjects
from shared.messaging import reply_handler

SERVICE = "tenant"


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    async with (
        lifecycle.database_pool(
            app.state, SERVICE, repository.SCHEMA, "services.tenant"
        ) as pool,
        lifecycle.nats_connection(app.state, SERVICE) as nc,
    ):
        micro = await add_service(
            nc,
            name="linkdesk-tenant",
            version="1.0.0",
            description="Resolves link secrets and tenant form settings",
        )
        await micro.add_endpoint(
            name="resolve_secret",
            subject=subjects.TENANT_RESOLVE_SECRET,
            queue_group=subjects.QUEUE_GROUP,
            handler=reply_handler(
                messages.ResolveSecret, partial(lookup.resolve_secret, pool)
            ),
        )
        await micro.add_endpoint(
            name="get_tenant",
            subject=subjects.TENANT_GET,
            queue_group=subjects.QUEUE_GROUP,
            handler=reply_handler(messages.GetTenant, partial(lookup.get_form, pool)),
        )
        try:
            yield
        finally:
            await micro.stop()


async def _readiness(state: State) -> dict[str, bool]:
    nc = getattr(state, "nc", None)
    pool = getattr(state, "pool", None)
    return {
        "nats": bool(nc and nc.is_connected),
        "database": bool(pool and await lifecycle.database_ready(pool)),
    }


def create_app() -> Litestar:
    """Build the tenant service's ASGI app."""
    return Litestar(
        route_handlers=[api.TenantController, health.health_router(_readiness)],
        lifespan=[_lifespan],
        logging_config=None,
        state=State({"admin_tokens": admin_auth.tokens_from_env()}),
        exception_handlers=admin_api.EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        openapi_config=admin_api.openapi_config(
            "linkdesk tenant admin API",
            "Tenants, the tickets-without-login switch and link secrets.",
        ),
    )
