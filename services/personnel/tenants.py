"""Ask the tenant service whether a tenant exists before people are added.

The personnel service does not read the tenant schema, so it asks over
NATS. This keeps a mistyped tenant id from creating people that no link can
reach.
"""

from __future__ import annotations

import uuid

from litestar.exceptions import ServiceUnavailableException
from nats.aio.client import Client

from shared import messages, settings, subjects
from shared.admin_api import NotFound
from shared.messaging import DependencyUnavailable, request


async def require_tenant(nc: Client, tenant_id: uuid.UUID) -> None:
    """Raise `NotFound` (404) for an unknown tenant, and 503 when the tenant
    service does not reply."""
    try:
        resolved = await request(
            nc,
            subjects.TENANT_GET,
            messages.GetTenant(tenant_id=str(tenant_id)),
            messages.TenantResolved,
            timeout=settings.request_timeout(),
        )
    except DependencyUnavailable as exc:
        raise ServiceUnavailableException(
            detail=f"cannot check that tenant {tenant_id} exists: the tenant "
            f"service did not answer ({exc.reason}); nothing was changed, "
            "try again",
            headers={"Retry-After": "5"},
        ) from None
    # Any other reason (intake switched off) still means the tenant exists.
    if resolved.reason == "unknown_tenant":
        msg = (
            f"tenant {tenant_id} not found; check the id with `linkdesk tenant "
            "list` or create the tenant first"
        )
        raise NotFound(msg)
