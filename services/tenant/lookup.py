"""Decide whether a link secret or tenant id may open a ticket form."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import asyncpg

from services.tenant import repository
from shared import messages

logger = logging.getLogger(__name__)


def _form(tenant: repository.Tenant) -> messages.TenantForm:
    return messages.TenantForm(
        tenant_id=str(tenant.id),
        name=tenant.name,
        language=tenant.language,
        categories=list(tenant.categories),
    )


async def resolve_secret(
    pool: asyncpg.Pool, request: messages.ResolveSecret
) -> messages.TenantResolved:
    """Return the tenant a secret opens, or the reason it opens nothing."""
    match = await repository.find_by_secret(pool, request.secret)
    if match is None:
        return messages.TenantResolved(reason="unknown_secret")
    now = dt.datetime.now(dt.UTC)
    if match.secret.revoked_at is not None and match.secret.revoked_at <= now:
        return messages.TenantResolved(reason="revoked_secret")
    if match.secret.expires_at is not None and match.secret.expires_at <= now:
        return messages.TenantResolved(reason="expired_secret")
    if not match.tenant.intake_enabled:
        return messages.TenantResolved(reason="intake_disabled")
    await repository.touch_secret(pool, match.secret)
    return messages.TenantResolved(
        tenant=_form(match.tenant), secret_expires_at=match.secret.expires_at
    )


async def get_form(
    pool: asyncpg.Pool, request: messages.GetTenant
) -> messages.TenantResolved:
    """Return a tenant's form settings while its intake is switched on."""
    try:
        tenant = await repository.get_tenant(pool, uuid.UUID(request.tenant_id))
    except (ValueError, repository.TenantNotFound):
        return messages.TenantResolved(reason="unknown_tenant")
    if not tenant.intake_enabled:
        return messages.TenantResolved(reason="intake_disabled")
    return messages.TenantResolved(tenant=_form(tenant))
