"""Decide whether a link secret, signed link or tenant id may open a ticket form."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Literal

import asyncpg

from services.tenant import link_secret, repository
from shared import messages, signed_link

logger = logging.getLogger(__name__)


def _form(tenant: repository.Tenant) -> messages.TenantForm:
    return messages.TenantForm(
        tenant_id=str(tenant.id),
        name=tenant.name,
        language=tenant.language,
        categories=list(tenant.categories),
        frame_ancestors=list(tenant.frame_ancestors),
        signed_links_required=tenant.signed_links_required,
    )


def _secret_rejection(
    secret: repository.SecretInfo, now: dt.datetime
) -> messages.TenantRejection | None:
    """Return why a secret opens nothing at `now`, or None while it works.

    A rotation's grace period is the secret's `expires_at`, so the secret
    keeps working until then.
    """
    if secret.revoked_at is not None and secret.revoked_at <= now:
        return "revoked_secret"
    if secret.expires_at is not None and secret.expires_at <= now:
        return "expired_secret"
    return None


def _key_rejection(
    key: repository.SigningKeyInfo, now: dt.datetime
) -> Literal["revoked_key", "expired_key"] | None:
    """Return why a signing key verifies nothing at `now`, or None while it works."""
    if key.revoked_at is not None and key.revoked_at <= now:
        return "revoked_key"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired_key"
    return None


async def resolve_secret(
    pool: asyncpg.Pool, request: messages.ResolveSecret
) -> messages.TenantResolved:
    """Return the tenant a secret opens, or the reason it opens nothing."""
    wanted = link_secret.parse_hex_digest(request.secret_sha256)
    if wanted is None:
        return messages.TenantResolved(reason="unknown_secret")
    match = await repository.find_by_secret_digest(pool, wanted)
    if match is None:
        return messages.TenantResolved(reason="unknown_secret")
    rejection = _secret_rejection(match.secret, dt.datetime.now(dt.UTC))
    if rejection is not None:
        return messages.TenantResolved(reason=rejection)
    if not match.tenant.intake_enabled:
        return messages.TenantResolved(reason="intake_disabled")
    if match.tenant.signed_links_required:
        return messages.TenantResolved(reason="signed_link_required")
    await repository.touch_secret(pool, match.secret)
    return messages.TenantResolved(
        tenant=_form(match.tenant),
        secret_expires_at=match.secret.expires_at,
        secret_id=str(match.secret.id),
    )


async def _credential_check(
    pool: asyncpg.Pool, tenant: repository.Tenant, request: messages.GetTenant
) -> tuple[messages.TenantRejection | None, dt.datetime | None]:
    """Return why the secret or key named in `request` no longer opens this
    tenant's forms (None when it does or none is named), and when it expires."""
    now = dt.datetime.now(dt.UTC)
    expires_at: dt.datetime | None = None
    if request.secret_id is not None:
        try:
            secret_id = uuid.UUID(request.secret_id)
        except ValueError:
            return "unknown_secret", None
        secret = await repository.find_tenant_secret(pool, tenant.id, secret_id)
        if secret is None:
            return "unknown_secret", None
        rejection = _secret_rejection(secret, now)
        if rejection is not None:
            return rejection, None
        if tenant.signed_links_required:
            return "signed_link_required", None
        expires_at = secret.expires_at
    if request.key_id is not None:
        key = await repository.find_tenant_signing_key(pool, tenant.id, request.key_id)
        if key is None:
            return "unknown_key", None
        key_rejection = _key_rejection(key, now)
        if key_rejection is not None:
            return key_rejection, None
        expires_at = _earliest(expires_at, key.expires_at)
    return None, expires_at


def _earliest(*times: dt.datetime | None) -> dt.datetime | None:
    known = [value for value in times if value is not None]
    return min(known, default=None)


async def get_form(
    pool: asyncpg.Pool, request: messages.GetTenant
) -> messages.TenantResolved:
    """Return a tenant's form settings while its intake is switched on and the
    secret or key named in the request still works."""
    try:
        tenant = await repository.get_tenant(pool, uuid.UUID(request.tenant_id))
    except (ValueError, repository.TenantNotFound):
        return messages.TenantResolved(reason="unknown_tenant")
    rejection, expires_at = await _credential_check(pool, tenant, request)
    if rejection is not None:
        return messages.TenantResolved(reason=rejection)
    if not tenant.intake_enabled:
        return messages.TenantResolved(reason="intake_disabled")
    return messages.TenantResolved(
        tenant=_form(tenant), credential_expires_at=expires_at
    )


MAX_SIGNED_LINK_LIFETIME = dt.timedelta(days=31)
"""Latest expiry a signed link may name, counted from now. A link that is
valid for longer is as dangerous as a raw secret once it leaks, so it is
rejected."""


def _signed_rejection(
    reason: messages.SignedLinkRejection,
) -> messages.SignedLinkVerified:
    return messages.SignedLinkVerified(reason=reason)


async def verify_signed_link(
    pool: asyncpg.Pool, request: messages.VerifySignedLink
) -> messages.SignedLinkVerified:
    """Check a signed link with the named key and return its tenant and claims,
    or the reason it opens nothing."""
    match = await repository.find_signing_key(pool, request.key_id)
    if match is None:
        return _signed_rejection("unknown_key")
    now = dt.datetime.now(dt.UTC)
    key_rejection = _key_rejection(match.info, now)
    if key_rejection is not None:
        return _signed_rejection(key_rejection)
    token = signed_link.SignedToken(
        key_id=request.key_id, payload=request.payload, signature=request.signature
    )
    if not signed_link.signature_matches(match.key, token):
        return _signed_rejection("bad_signature")
    try:
        claims = signed_link.decode_payload(request.payload)
    except signed_link.InvalidClaims as exc:
        # Signed with a valid key, so the signer has a bug worth logging.
        logger.warning(
            "signed link has invalid claims: %s",
            exc,
            extra={"event": "signed_link_invalid_claims", "key_id": match.info.id},
        )
        return _signed_rejection("invalid_claims")
    if claims.tenant_id != str(match.tenant.id):
        return _signed_rejection("tenant_mismatch")
    expires = dt.datetime.fromtimestamp(claims.expires_at, dt.UTC)
    if expires <= now:
        return _signed_rejection("link_expired")
    if expires > now + MAX_SIGNED_LINK_LIFETIME:
        return _signed_rejection("expiry_too_far")
    if not match.tenant.intake_enabled:
        return _signed_rejection("intake_disabled")
    if claims.category and claims.category not in match.tenant.categories:
        return _signed_rejection("unknown_category")
    await repository.touch_signing_key(pool, match.info)
    return messages.SignedLinkVerified(
        tenant=_form(match.tenant),
        personnel_number=claims.personnel_number,
        preset_location=claims.location,
        preset_category=claims.category,
        key_id=match.info.id,
    )
