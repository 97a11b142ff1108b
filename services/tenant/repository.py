"""SQL of the tenant service; the only module that talks to its schema.

Every change that an administrator makes writes its audit entry in the same
transaction, so the audit trail cannot miss a committed change.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Any, TypeAlias

import asyncpg
import asyncpg.pool
import msgspec

from services.tenant import link_secret
from shared.admin_api import NotFound

SCHEMA = "tenant"

Connection: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
"""`last_used_at` is written at most this often per secret, so that opening
links does not turn every read into a write."""


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str
    language: str
    categories: list[str]
    intake_enabled: bool
    frame_ancestors: list[str]
    """Origins that may show the form in a frame, such as the intranet's."""
    signed_links_required: bool
    """Whether raw-secret links are rejected and only signed links work."""
    created_at: dt.datetime
    updated_at: dt.datetime


class SecretInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A link secret as administrators see it: never the secret itself."""

    id: uuid.UUID
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class SecretMatch(msgspec.Struct, frozen=True, kw_only=True):
    tenant: Tenant
    secret: SecretInfo


class SigningKeyInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A signing key as administrators see it: its id, never the key."""

    id: str
    """The key id that signed links name."""
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class SigningKeyMatch(msgspec.Struct, frozen=True, kw_only=True):
    tenant: Tenant
    info: SigningKeyInfo
    key: str


class SigningKeyRotation(msgspec.Struct, frozen=True, kw_only=True):
    issued: SigningKeyInfo
    expiring: list[SigningKeyInfo]
    """The tenant's other keys that were active and now expire."""


class AuditEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One administrator action on a tenant."""

    id: int
    tenant_id: uuid.UUID
    admin: str
    """Name of the admin token that made the request."""
    action: str
    details: dict[str, Any]
    created_at: dt.datetime


class TenantUpdated(msgspec.Struct, frozen=True, kw_only=True):
    tenant: Tenant
    changed: list[str]
    """Fields whose stored value changed; empty when the request changed nothing."""


class SecretRotation(msgspec.Struct, frozen=True, kw_only=True):
    issued: SecretInfo
    expiring: list[SecretInfo]
    """The tenant's other secrets that were active and now expire."""


class TenantNotFound(NotFound):
    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        super().__init__(
            f"tenant {tenant_id} not found; `GET /admin/tenants` lists the tenants"
        )


_TENANT_COLUMNS = (
    "id, name, language, categories, intake_enabled, frame_ancestors,"
    " signed_links_required, created_at, updated_at"
)
# Column names, not a credential.
_SECRET_COLUMNS = "id, created_at, expires_at, revoked_at, last_used_at"  # noqa: S105
_UPDATABLE = frozenset(
    {
        "name",
        "language",
        "categories",
        "intake_enabled",
        "frame_ancestors",
        "signed_links_required",
    }
)
_KEY_COLUMNS = "id, created_at, expires_at, revoked_at, last_used_at"


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(**{key: row[key] for key in Tenant.__struct_fields__})


def _secret(row: asyncpg.Record) -> SecretInfo:
    return SecretInfo(**{key: row[key] for key in SecretInfo.__struct_fields__})


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


async def _audit(
    connection: Connection,
    tenant_id: uuid.UUID,
    admin: str,
    action: str,
    details: dict[str, Any],
) -> None:
    await connection.execute(
        "INSERT INTO tenant.audit_log (tenant_id, admin_name, action, details)"
        " VALUES ($1, $2, $3, $4::jsonb)",
        tenant_id,
        admin,
        action,
        _json(details),
    )


async def _lock_tenant(connection: Connection, tenant_id: uuid.UUID) -> Tenant:
    row = await connection.fetchrow(
        f"SELECT {_TENANT_COLUMNS} FROM tenant.tenants WHERE id = $1 FOR UPDATE",
        tenant_id,
    )
    if row is None:
        raise TenantNotFound(tenant_id)
    return _tenant(row)


# --- tenants ----------------------------------------------------------------


async def create_tenant(
    pool: asyncpg.Pool,
    *,
    admin: str,
    name: str,
    language: str,
    categories: list[str],
    intake_enabled: bool,
) -> Tenant:
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            "INSERT INTO tenant.tenants"
            " (id, name, language, categories, intake_enabled)"
            f" VALUES ($1, $2, $3, $4, $5) RETURNING {_TENANT_COLUMNS}",
            uuid.uuid4(),
            name,
            language,
            categories,
            intake_enabled,
        )
        assert row is not None
        tenant = _tenant(row)
        await _audit(
            connection,
            tenant.id,
            admin,
            "tenant_created",
            {
                "name": name,
                "language": language,
                "categories": categories,
                "intake_enabled": intake_enabled,
            },
        )
    return tenant


async def list_tenants(pool: asyncpg.Pool) -> list[Tenant]:
    rows = await pool.fetch(
        f"SELECT {_TENANT_COLUMNS} FROM tenant.tenants ORDER BY created_at, id"
    )
    return [_tenant(row) for row in rows]


async def get_tenant(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> Tenant:
    row = await pool.fetchrow(
        f"SELECT {_TENANT_COLUMNS} FROM tenant.tenants WHERE id = $1", tenant_id
    )
    if row is None:
        raise TenantNotFound(tenant_id)
    return _tenant(row)


async def update_tenant(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, changes: dict[str, Any], *, admin: str
) -> TenantUpdated:
    """Set the fields in `changes` and audit those whose value changed.

    A change of `intake_enabled` gets its own audit entry
    (`intake_enabled` or `intake_disabled`), so that the switch is easy to
    find in the trail.
    """
    unknown = set(changes) - _UPDATABLE
    if unknown:
        msg = f"cannot update tenant fields {sorted(unknown)}"
        raise ValueError(msg)
    async with pool.acquire() as connection, connection.transaction():
        current = await _lock_tenant(connection, tenant_id)
        changed = {
            field: value
            for field, value in changes.items()
            if getattr(current, field) != value
        }
        if not changed:
            return TenantUpdated(tenant=current, changed=[])
        assignments = ", ".join(
            f"{column} = ${number}" for number, column in enumerate(changed, start=2)
        )
        row = await connection.fetchrow(
            f"UPDATE tenant.tenants SET {assignments}, updated_at = now()"
            f" WHERE id = $1 RETURNING {_TENANT_COLUMNS}",
            tenant_id,
            *changed.values(),
        )
        assert row is not None
        settings = {k: v for k, v in changed.items() if k != "intake_enabled"}
        if settings:
            await _audit(
                connection,
                tenant_id,
                admin,
                "tenant_updated",
                {
                    field: {"old": getattr(current, field), "new": value}
                    for field, value in settings.items()
                },
            )
        if "intake_enabled" in changed:
            action = (
                "intake_enabled" if changed["intake_enabled"] else "intake_disabled"
            )
            await _audit(connection, tenant_id, admin, action, {})
    return TenantUpdated(tenant=_tenant(row), changed=sorted(changed))


# --- link secrets -----------------------------------------------------------


async def _insert_secret(
    connection: Connection, tenant_id: uuid.UUID, secret: str
) -> SecretInfo:
    row = await connection.fetchrow(
        "INSERT INTO tenant.link_secrets (id, tenant_id, secret_hash)"
        f" VALUES ($1, $2, $3) RETURNING {_SECRET_COLUMNS}",
        uuid.uuid4(),
        tenant_id,
        link_secret.digest(secret),
    )
    assert row is not None
    return _secret(row)


async def add_secret(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, secret: str, *, admin: str
) -> SecretInfo:
    async with pool.acquire() as connection, connection.transaction():
        await _lock_tenant(connection, tenant_id)
        info = await _insert_secret(connection, tenant_id, secret)
        await _audit(
            connection, tenant_id, admin, "secret_issued", {"secret_id": str(info.id)}
        )
    return info


async def rotate_secrets(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    secret: str,
    *,
    grace_seconds: int,
    admin: str,
) -> SecretRotation:
    """Add `secret` and let every other active secret expire after the grace.

    A secret that already expires sooner keeps its earlier time, so a
    rotation never lengthens the life of an old secret. With a grace of 0
    the old secrets stop working as the transaction commits.
    """
    async with pool.acquire() as connection, connection.transaction():
        await _lock_tenant(connection, tenant_id)
        issued = await _insert_secret(connection, tenant_id, secret)
        rows = await connection.fetch(
            "UPDATE tenant.link_secrets"
            " SET expires_at = least(coalesce(expires_at, 'infinity'),"
            " now() + make_interval(secs => $3))"
            " WHERE tenant_id = $1 AND id <> $2 AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now())"
            f" RETURNING {_SECRET_COLUMNS}",
            tenant_id,
            issued.id,
            float(grace_seconds),
        )
        expiring = sorted((_secret(row) for row in rows), key=lambda s: s.created_at)
        await _audit(
            connection,
            tenant_id,
            admin,
            "secret_rotated",
            {
                "secret_id": str(issued.id),
                "grace_seconds": grace_seconds,
                "expiring": [
                    {"secret_id": str(s.id), "expires_at": s.expires_at}
                    for s in expiring
                ],
            },
        )
    return SecretRotation(issued=issued, expiring=expiring)


async def list_secrets(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[SecretInfo]:
    await get_tenant(pool, tenant_id)
    rows = await pool.fetch(
        f"SELECT {_SECRET_COLUMNS} FROM tenant.link_secrets"
        " WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return [_secret(row) for row in rows]


async def revoke_secret(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, secret_id: uuid.UUID, *, admin: str
) -> tuple[SecretInfo, bool] | None:
    """Revoke a secret of the tenant; return it and whether this call revoked it.

    Returns None when the tenant has no secret with that id, which includes
    a secret of another tenant. Revoking twice keeps the first time and
    writes no second audit entry.
    """
    async with pool.acquire() as connection, connection.transaction():
        before = await connection.fetchval(
            "SELECT revoked_at IS NOT NULL FROM tenant.link_secrets"
            " WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            secret_id,
            tenant_id,
        )
        if before is None:
            return None
        row = await connection.fetchrow(
            "UPDATE tenant.link_secrets SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = $1 AND tenant_id = $2 RETURNING {_SECRET_COLUMNS}",
            secret_id,
            tenant_id,
        )
        assert row is not None
        if not before:
            await _audit(
                connection,
                tenant_id,
                admin,
                "secret_revoked",
                {"secret_id": str(secret_id)},
            )
    return _secret(row), not before


# --- signing keys -----------------------------------------------------------


def _key_info(row: asyncpg.Record) -> SigningKeyInfo:
    return SigningKeyInfo(**{key: row[key] for key in SigningKeyInfo.__struct_fields__})


async def _insert_signing_key(
    connection: Connection, tenant_id: uuid.UUID, key_id: str, key: str
) -> SigningKeyInfo:
    row = await connection.fetchrow(
        "INSERT INTO tenant.signing_keys (id, tenant_id, key)"
        f" VALUES ($1, $2, $3) RETURNING {_KEY_COLUMNS}",
        key_id,
        tenant_id,
        key,
    )
    assert row is not None
    return _key_info(row)


async def add_signing_key(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, key_id: str, key: str, *, admin: str
) -> SigningKeyInfo:
    async with pool.acquire() as connection, connection.transaction():
        await _lock_tenant(connection, tenant_id)
        info = await _insert_signing_key(connection, tenant_id, key_id, key)
        await _audit(
            connection, tenant_id, admin, "signing_key_issued", {"key_id": key_id}
        )
    return info


async def rotate_signing_keys(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    key_id: str,
    key: str,
    *,
    grace_seconds: int,
    admin: str,
) -> SigningKeyRotation:
    """Add a key and let every other active key expire after the grace, with
    the same rules as `rotate_secrets`."""
    async with pool.acquire() as connection, connection.transaction():
        await _lock_tenant(connection, tenant_id)
        issued = await _insert_signing_key(connection, tenant_id, key_id, key)
        rows = await connection.fetch(
            "UPDATE tenant.signing_keys"
            " SET expires_at = least(coalesce(expires_at, 'infinity'),"
            " now() + make_interval(secs => $3))"
            " WHERE tenant_id = $1 AND id <> $2 AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > now())"
            f" RETURNING {_KEY_COLUMNS}",
            tenant_id,
            key_id,
            float(grace_seconds),
        )
        expiring = sorted((_key_info(row) for row in rows), key=lambda k: k.created_at)
        await _audit(
            connection,
            tenant_id,
            admin,
            "signing_key_rotated",
            {
                "key_id": key_id,
                "grace_seconds": grace_seconds,
                "expiring": [
                    {"key_id": k.id, "expires_at": k.expires_at} for k in expiring
                ],
            },
        )
    return SigningKeyRotation(issued=issued, expiring=expiring)


async def list_signing_keys(
    pool: asyncpg.Pool, tenant_id: uuid.UUID
) -> list[SigningKeyInfo]:
    await get_tenant(pool, tenant_id)
    rows = await pool.fetch(
        f"SELECT {_KEY_COLUMNS} FROM tenant.signing_keys"
        " WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return [_key_info(row) for row in rows]


async def revoke_signing_key(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, key_id: str, *, admin: str
) -> tuple[SigningKeyInfo, bool] | None:
    """Revoke a key of the tenant; return it and whether this call revoked it.

    Returns None when the tenant has no key with that id.
    """
    async with pool.acquire() as connection, connection.transaction():
        before = await connection.fetchval(
            "SELECT revoked_at IS NOT NULL FROM tenant.signing_keys"
            " WHERE id = $1 AND tenant_id = $2 FOR UPDATE",
            key_id,
            tenant_id,
        )
        if before is None:
            return None
        row = await connection.fetchrow(
            "UPDATE tenant.signing_keys SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE id = $1 AND tenant_id = $2 RETURNING {_KEY_COLUMNS}",
            key_id,
            tenant_id,
        )
        assert row is not None
        if not before:
            await _audit(
                connection, tenant_id, admin, "signing_key_revoked", {"key_id": key_id}
            )
    return _key_info(row), not before


async def find_signing_key(pool: asyncpg.Pool, key_id: str) -> SigningKeyMatch | None:
    """Return the key with id `key_id` and its tenant, or None."""
    row = await pool.fetchrow(
        "SELECT k.id AS key_id, k.key, k.created_at AS key_created_at,"
        " k.expires_at, k.revoked_at, k.last_used_at,"
        f" {', '.join('t.' + c.strip() for c in _TENANT_COLUMNS.split(','))}"
        " FROM tenant.signing_keys k JOIN tenant.tenants t ON t.id = k.tenant_id"
        " WHERE k.id = $1",
        key_id,
    )
    if row is None:
        return None
    info = SigningKeyInfo(
        id=row["key_id"],
        created_at=row["key_created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
    return SigningKeyMatch(tenant=_tenant(row), info=info, key=row["key"])


async def touch_signing_key(pool: asyncpg.Pool, info: SigningKeyInfo) -> None:
    now = dt.datetime.now(dt.UTC)
    if info.last_used_at and now - info.last_used_at < LAST_USED_RESOLUTION:
        return
    await pool.execute(
        "UPDATE tenant.signing_keys SET last_used_at = now() WHERE id = $1", info.id
    )


# --- audit trail ------------------------------------------------------------


async def list_audit(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, *, limit: int, before: int | None
) -> list[AuditEntry]:
    """Return up to `limit` entries, newest first, older than entry `before`."""
    await get_tenant(pool, tenant_id)
    rows = await pool.fetch(
        "SELECT id, tenant_id, admin_name, action, details::text AS details,"
        " created_at FROM tenant.audit_log"
        " WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3",
        tenant_id,
        before,
        limit,
    )
    return [
        AuditEntry(
            id=row["id"],
            tenant_id=row["tenant_id"],
            admin=row["admin_name"],
            action=row["action"],
            details=msgspec.json.decode(row["details"]),
            created_at=row["created_at"],
        )
        for row in rows
    ]


# --- lookups from the gateway -----------------------------------------------


async def find_by_secret_digest(
    pool: asyncpg.Pool, wanted: bytes
) -> SecretMatch | None:
    """Find the secret whose SHA-256 (`link_secret.digest`) is `wanted`, and its
    tenant."""
    row = await pool.fetchrow(
        "SELECT s.id AS secret_id, s.secret_hash, s.created_at AS secret_created_at,"
        " s.expires_at, s.revoked_at, s.last_used_at,"
        f" {', '.join('t.' + c.strip() for c in _TENANT_COLUMNS.split(','))}"
        " FROM tenant.link_secrets s JOIN tenant.tenants t ON t.id = s.tenant_id"
        " WHERE s.secret_hash = $1",
        wanted,
    )
    # The index lookup already matched; the constant-time comparison keeps
    # the check itself free of early exits should the lookup ever change.
    if row is None or not hmac.compare_digest(bytes(row["secret_hash"]), wanted):
        return None
    info = SecretInfo(
        id=row["secret_id"],
        created_at=row["secret_created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )
    return SecretMatch(tenant=_tenant(row), secret=info)


async def find_tenant_secret(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, secret_id: uuid.UUID
) -> SecretInfo | None:
    """Return the tenant's secret with id `secret_id`, or None, also when the
    secret belongs to another tenant."""
    row = await pool.fetchrow(
        f"SELECT {_SECRET_COLUMNS} FROM tenant.link_secrets"
        " WHERE id = $1 AND tenant_id = $2",
        secret_id,
        tenant_id,
    )
    return None if row is None else _secret(row)


async def find_tenant_signing_key(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, key_id: str
) -> SigningKeyInfo | None:
    """Return the tenant's signing key with id `key_id` (without the key), or
    None, also when the key belongs to another tenant."""
    row = await pool.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM tenant.signing_keys"
        " WHERE id = $1 AND tenant_id = $2",
        key_id,
        tenant_id,
    )
    return None if row is None else _key_info(row)


async def touch_secret(pool: asyncpg.Pool, secret: SecretInfo) -> None:
    now = dt.datetime.now(dt.UTC)
    if secret.last_used_at and now - secret.last_used_at < LAST_USED_RESOLUTION:
        return
    await pool.execute(
        "UPDATE tenant.link_secrets SET last_used_at = now() WHERE id = $1", secret.id
    )
