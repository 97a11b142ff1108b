"""Admin HTTP API of the tenant service.

Each change is committed together with its audit entry, then announced as a
`TenantChanged` event so that gateways drop what they cached for the tenant.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from services.tenant import link_secret, repository, signing_key
from shared import directory_events, text
from shared.admin_api import AdminRequest, NotFound, log_admin_action
from shared.admin_auth import admin_guard

logger = logging.getLogger(__name__)

MAX_GRACE_SECONDS = 30 * 24 * 3600
"""Maximum grace period of a rotation (30 days), so that a replaced secret
stops working once an intranet has had ample time to update its links."""

Language = Annotated[str, msgspec.Meta(pattern="^(de|en|fr|it)$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
Categories = Annotated[list[Category], msgspec.Meta(min_length=1, max_length=50)]
GraceSeconds = Annotated[int, msgspec.Meta(ge=0, le=MAX_GRACE_SECONDS)]
FrameAncestor = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
FrameAncestors = Annotated[list[FrameAncestor], msgspec.Meta(max_length=20)]

# An origin as CSP's frame-ancestors accepts it: scheme, host (optionally a
# leading `*.` for every subdomain) and port, nothing else, so that no
# value can add a directive to the header.
_ORIGIN = re.compile(
    r"https?://(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
    r"(:[0-9]{1,5})?"
)


class TenantCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    language: Language = "de"
    categories: Categories = msgspec.field(
        default_factory=lambda: ["IT", "Gebäude", "Sonstiges"]
    )
    intake_enabled: bool = False


class TenantUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    categories: Categories | msgspec.UnsetType = msgspec.UNSET
    intake_enabled: bool | msgspec.UnsetType = msgspec.UNSET
    frame_ancestors: FrameAncestors | msgspec.UnsetType = msgspec.UNSET
    """Origins such as `https://intranet.example.org` that may show the form
    in a frame; an empty list allows none."""
    signed_links_required: bool | msgspec.UnsetType = msgspec.UNSET
    """True rejects raw-secret links, so that only signed links work."""


class SecretRotate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    grace_seconds: GraceSeconds = 0
    """How long the tenant's other active secrets keep working, in seconds."""


class IssuedSecret(msgspec.Struct, kw_only=True):
    """A new link secret. `secret` is shown in this response only."""

    secret: str
    info: repository.SecretInfo


class RotatedSecret(msgspec.Struct, kw_only=True):
    """A rotation's new secret (shown in this response only) and the secrets
    that now expire."""

    secret: str
    info: repository.SecretInfo
    expiring: list[repository.SecretInfo]


class KeyRotate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    grace_seconds: GraceSeconds = 0
    """How long the tenant's other active signing keys keep working, in seconds."""


class IssuedSigningKey(msgspec.Struct, kw_only=True):
    """A new signing key. `key` is shown in this response only."""

    key_id: str
    key: str
    info: repository.SigningKeyInfo


class RotatedSigningKey(msgspec.Struct, kw_only=True):
    """A rotation's new key (shown in this response only) and the keys that
    now expire."""

    key_id: str
    key: str
    info: repository.SigningKeyInfo
    expiring: list[repository.SigningKeyInfo]


def _invalid(field: str, value: object, problem: str) -> ValidationException:
    return ValidationException(
        detail=f"invalid {field} {value!r}: {problem}",
        extra=[{"key": field, "message": problem}],
    )


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise _invalid("name", name, "the name is blank; send the tenant's name")
    if text.has_control_character(cleaned):
        raise _invalid("name", name, "the name contains a control character")
    return cleaned


def _clean_categories(categories: Sequence[str]) -> list[str]:
    """Trim each category; reject blank and repeated ones, which the form's
    category list cannot show sensibly."""
    cleaned = [category.strip() for category in categories]
    for original, category in zip(categories, cleaned, strict=True):
        if not category:
            raise _invalid(
                "categories", original, "a category is blank; remove it or name it"
            )
        if text.has_control_character(category):
            raise _invalid(
                "categories", original, "a category contains a control character"
            )
    repeated = sorted({c for c in cleaned if cleaned.count(c) > 1})
    if repeated:
        raise _invalid(
            "categories", repeated, "categories repeat; list each category once"
        )
    return cleaned


def _clean_frame_ancestors(origins: Sequence[str]) -> list[str]:
    """Lower-case and check each origin; reject paths, quotes, wildcards other
    than a leading `*.`, and repeats."""
    cleaned = [origin.strip().lower().rstrip("/") for origin in origins]
    for original, origin in zip(origins, cleaned, strict=True):
        if not _ORIGIN.fullmatch(origin):
            raise _invalid(
                "frame_ancestors",
                original,
                "not an origin; send scheme and host such as"
                " https://intranet.example.org, optionally with a port",
            )
    repeated = sorted({o for o in cleaned if cleaned.count(o) > 1})
    if repeated:
        raise _invalid(
            "frame_ancestors", repeated, "origins repeat; list each origin once"
        )
    return cleaned


async def _announce(
    state: State,
    tenant_id: uuid.UUID,
    change: directory_events.TenantChange,
    *,
    fields: Sequence[str] = (),
    secret_id: uuid.UUID | None = None,
    key_id: str | None = None,
) -> None:
    await directory_events.publish(
        state.nc,
        directory_events.TenantChanged(
            tenant_id=str(tenant_id),
            change=change,
            fields=list(fields),
            secret_id=None if secret_id is None else str(secret_id),
            key_id=key_id,
            changed_at=directory_events.now(),
        ),
    )


class TenantController(Controller):
    path = "/admin/tenants"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["tenants"]  # noqa: RUF012

    @post("/", operation_id="CreateTenant")
    async def create_tenant(
        self, state: State, request: AdminRequest, data: TenantCreate
    ) -> repository.Tenant:
        pool: asyncpg.Pool = state.pool
        tenant = await repository.create_tenant(
            pool,
            admin=request.state.admin_name,
            name=_clean_name(data.name),
            language=data.language,
            categories=_clean_categories(data.categories),
            intake_enabled=data.intake_enabled,
        )
        log_admin_action(
            "tenant created", "tenant_created", request, tenant_id=tenant.id
        )
        await _announce(state, tenant.id, "created")
        return tenant

    @get("/", operation_id="ListTenants")
    async def list_tenants(self, state: State) -> list[repository.Tenant]:
        return await repository.list_tenants(state.pool)

    @get("/{tenant_id:uuid}", operation_id="GetTenant")
    async def get_tenant(self, state: State, tenant_id: uuid.UUID) -> repository.Tenant:
        return await repository.get_tenant(state.pool, tenant_id)

    @patch("/{tenant_id:uuid}", operation_id="UpdateTenant")
    async def update_tenant(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: TenantUpdate,
    ) -> repository.Tenant:
        changes: dict[str, Any] = {
            field: getattr(data, field)
            for field in data.__struct_fields__
            if getattr(data, field) is not msgspec.UNSET
        }
        if "name" in changes:
            changes["name"] = _clean_name(changes["name"])
        if "categories" in changes:
            changes["categories"] = _clean_categories(changes["categories"])
        if "frame_ancestors" in changes:
            changes["frame_ancestors"] = _clean_frame_ancestors(
                changes["frame_ancestors"]
            )
        return await _update(state, request, tenant_id, changes)

    @post(
        "/{tenant_id:uuid}/intake/enable", operation_id="EnableIntake", status_code=200
    )
    async def enable_intake(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID
    ) -> repository.Tenant:
        """Switch tickets without login on: the tenant's valid links open forms."""
        return await _update(state, request, tenant_id, {"intake_enabled": True})

    @post(
        "/{tenant_id:uuid}/intake/disable",
        operation_id="DisableIntake",
        status_code=200,
    )
    async def disable_intake(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID
    ) -> repository.Tenant:
        """Switch tickets without login off: every link of the tenant stops
        working at once, whatever its secret."""
        return await _update(state, request, tenant_id, {"intake_enabled": False})

    @post("/{tenant_id:uuid}/secrets", operation_id="IssueSecret")
    async def issue_secret(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID
    ) -> IssuedSecret:
        """Add a link secret; the tenant's other secrets keep working."""
        secret = link_secret.generate()
        info = await repository.add_secret(
            state.pool, tenant_id, secret, admin=request.state.admin_name
        )
        log_admin_action(
            "link secret issued",
            "secret_issued",
            request,
            tenant_id=tenant_id,
            secret_id=info.id,
        )
        await _announce(state, tenant_id, "secret_issued", secret_id=info.id)
        return IssuedSecret(secret=secret, info=info)

    @post("/{tenant_id:uuid}/secrets/rotate", operation_id="RotateSecret")
    async def rotate_secret(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: SecretRotate | None = None,
    ) -> RotatedSecret:
        """Issue a new secret; every other active secret of the tenant expires
        after `grace_seconds` (default 0: at once)."""
        grace = 0 if data is None else data.grace_seconds
        secret = link_secret.generate()
        rotation = await repository.rotate_secrets(
            state.pool,
            tenant_id,
            secret,
            grace_seconds=grace,
            admin=request.state.admin_name,
        )
        log_admin_action(
            "link secret rotated",
            "secret_rotated",
            request,
            tenant_id=tenant_id,
            secret_id=rotation.issued.id,
            grace_seconds=grace,
            expiring=len(rotation.expiring),
        )
        await _announce(
            state, tenant_id, "secret_rotated", secret_id=rotation.issued.id
        )
        return RotatedSecret(
            secret=secret, info=rotation.issued, expiring=rotation.expiring
        )

    @get("/{tenant_id:uuid}/secrets", operation_id="ListSecrets")
    async def list_secrets(
        self, state: State, tenant_id: uuid.UUID
    ) -> list[repository.SecretInfo]:
        return await repository.list_secrets(state.pool, tenant_id)

    @post(
        "/{tenant_id:uuid}/secrets/{secret_id:uuid}/revoke",
        operation_id="RevokeSecret",
        status_code=200,
    )
    async def revoke_secret(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        secret_id: uuid.UUID,
    ) -> repository.SecretInfo:
        """Revoke a secret at once; revoking it again changes nothing."""
        revoked = await repository.revoke_secret(
            state.pool, tenant_id, secret_id, admin=request.state.admin_name
        )
        if revoked is None:
            msg = (
                f"secret {secret_id} not found for tenant {tenant_id}; "
                f"`GET /admin/tenants/{tenant_id}/secrets` lists its secrets"
            )
            raise NotFound(msg)
        info, changed = revoked
        if changed:
            log_admin_action(
                "link secret revoked",
                "secret_revoked",
                request,
                tenant_id=tenant_id,
                secret_id=secret_id,
            )
            await _announce(state, tenant_id, "secret_revoked", secret_id=secret_id)
        return info

    @post("/{tenant_id:uuid}/signing-keys", operation_id="IssueSigningKey")
    async def issue_signing_key(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID
    ) -> IssuedSigningKey:
        """Add a key for signed links; the tenant's other keys keep working."""
        key_id, key = signing_key.generate_id(), signing_key.generate()
        info = await repository.add_signing_key(
            state.pool, tenant_id, key_id, key, admin=request.state.admin_name
        )
        log_admin_action(
            "signing key issued",
            "signing_key_issued",
            request,
            tenant_id=tenant_id,
            key_id=key_id,
        )
        await _announce(state, tenant_id, "signing_key_issued", key_id=key_id)
        return IssuedSigningKey(key_id=key_id, key=key, info=info)

    @post("/{tenant_id:uuid}/signing-keys/rotate", operation_id="RotateSigningKey")
    async def rotate_signing_key(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: KeyRotate | None = None,
    ) -> RotatedSigningKey:
        """Issue a new signing key; every other active key of the tenant
        expires after `grace_seconds` (default 0: at once)."""
        grace = 0 if data is None else data.grace_seconds
        key_id, key = signing_key.generate_id(), signing_key.generate()
        rotation = await repository.rotate_signing_keys(
            state.pool,
            tenant_id,
            key_id,
            key,
            grace_seconds=grace,
            admin=request.state.admin_name,
        )
        log_admin_action(
            "signing key rotated",
            "signing_key_rotated",
            request,
            tenant_id=tenant_id,
            key_id=key_id,
            grace_seconds=grace,
            expiring=len(rotation.expiring),
        )
        await _announce(state, tenant_id, "signing_key_rotated", key_id=key_id)
        return RotatedSigningKey(
            key_id=key_id, key=key, info=rotation.issued, expiring=rotation.expiring
        )

    @get("/{tenant_id:uuid}/signing-keys", operation_id="ListSigningKeys")
    async def list_signing_keys(
        self, state: State, tenant_id: uuid.UUID
    ) -> list[repository.SigningKeyInfo]:
        return await repository.list_signing_keys(state.pool, tenant_id)

    @post(
        "/{tenant_id:uuid}/signing-keys/{key_id:str}/revoke",
        operation_id="RevokeSigningKey",
        status_code=200,
    )
    async def revoke_signing_key(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        key_id: str,
    ) -> repository.SigningKeyInfo:
        """Revoke a signing key at once; revoking it again changes nothing."""
        revoked = await repository.revoke_signing_key(
            state.pool, tenant_id, key_id, admin=request.state.admin_name
        )
        if revoked is None:
            msg = (
                f"signing key {key_id!r} not found for tenant {tenant_id}; "
                f"`GET /admin/tenants/{tenant_id}/signing-keys` lists its keys"
            )
            raise NotFound(msg)
        info, changed = revoked
        if changed:
            log_admin_action(
                "signing key revoked",
                "signing_key_revoked",
                request,
                tenant_id=tenant_id,
                key_id=key_id,
            )
            await _announce(state, tenant_id, "signing_key_revoked", key_id=key_id)
        return info

    @get("/{tenant_id:uuid}/audit", operation_id="ListAudit")
    async def list_audit(
        self,
        state: State,
        tenant_id: uuid.UUID,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        before: Annotated[
            int | None,
            Parameter(description="entry id to continue before (newest first)"),
        ] = None,
    ) -> list[repository.AuditEntry]:
        """Return the tenant's audit trail, newest entry first."""
        return await repository.list_audit(
            state.pool, tenant_id, limit=limit, before=before
        )


async def _update(
    state: State, request: AdminRequest, tenant_id: uuid.UUID, changes: dict[str, Any]
) -> repository.Tenant:
    updated = await repository.update_tenant(
        state.pool, tenant_id, changes, admin=request.state.admin_name
    )
    if not updated.changed:
        return updated.tenant
    log_admin_action(
        "tenant updated",
        "tenant_updated",
        request,
        tenant_id=tenant_id,
        fields=",".join(updated.changed),
    )
    change: directory_events.TenantChange = "updated"
    if updated.changed == ["intake_enabled"]:
        change = (
            "intake_enabled" if updated.tenant.intake_enabled else "intake_disabled"
        )
    await _announce(state, tenant_id, change, fields=updated.changed)
    return updated.tenant
