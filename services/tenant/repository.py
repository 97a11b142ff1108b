"""SQL of the tenant service; the only module that talks to its schema."""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Any

import asyncpg
import msgspec

from services.tenant import link_secret
from shared.admin_api import NotFound

SCHEMA = "tenant"

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
"""`last_used_at` is written at most this often per secret, so that opening
links does not turn every read into a write."""


class Tenant(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str
    language: str
    categories: list[str]
    intake_enabled: bool
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


class TenantNotFound(NotFound):
    def __init__(self, tenant_id: uuid.UUID) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"tenant {tenant_id} not found")


_TENANT_COLUMNS = (
    "id, name, language, categories, intake_enabled, created_at, updated_at"
)


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(**{key: row[key] for key in Tenant.__struct_fields__})


def _secret(row: asyncpg.Record) -> SecretInfo:
    return SecretInfo(**{key: row[key] for key in SecretInfo.__struct_fields__})


async def create_tenant(
    pool: asyncpg.Pool,
    *,
    name: str,
    language: str,
    categories: list[str],
    intake_enabled: bool,
) -> Tenant:
    row = await pool.fetchrow(
        f"INSERT INTO tenant.tenants (id, name, language, categories, intake_enabled)"
        f" VALUES ($1, $2, $3, $4, $5) RETURNING {_TENANT_COLUMNS}",
        uuid.uuid4(),
        name,
        language,
        categories,
        intake_enabled,
    )
    assert row is not None
    return _tenant(row)


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
    pool: asyncpg.Pool, tenant_id: uuid.UUID, changes: dict[str, Any]
) -> Tenant:
    """Set the columns in `changes` (only known column names reach here)."""
    if not changes:
        return await get_tenant(pool, tenant_id)
    assignments = ", ".join(
        f"{column} = ${number}" for number, column in enumerate(changes, start=2)
    )
    row = await pool.fetchrow(
        f"UPDATE tenant.tenants SET {assignments}, updated_at = now()"
        f" WHERE id = $1 RETURNING {_TENANT_COLUMNS}",
        tenant_id,
        *changes.values(),
    )
    if row is None:
        raise TenantNotFound(tenant_id)
    return _tenant(row)


async def add_secret(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, secret: str
) -> SecretInfo:
    await get_tenant(pool, tenant_id)
    row = await pool.fetchrow(
        "INSERT INTO tenant.link_secrets (id, tenant_id, secret_hash)"
        " VALUES ($1, $2, $3)"
        " RETURNING id, created_at, expires_at, revoked_at, last_used_at",
        uuid.uuid4(),
        tenant_id,
        link_secret.digest(secret),
    )
    assert row is not None
    return _secret(row)


async def list_secrets(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> list[SecretInfo]:
    await get_tenant(pool, tenant_id)
    rows = await pool.fetch(
        "SELECT id, created_at, expires_at, revoked_at, last_used_at"
        " FROM tenant.link_secrets WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return [_secret(row) for row in rows]


async def revoke_secret(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, secret_id: uuid.UUID
) -> SecretInfo | None:
    row = await pool.fetchrow(
        "UPDATE tenant.link_secrets SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = $1 AND tenant_id = $2"
        " RETURNING id, created_at, expires_at, revoked_at, last_used_at",
        secret_id,
        tenant_id,
    )
    return None if row is None else _secret(row)


async def find_by_secret(pool: asyncpg.Pool, secret: str) -> SecretMatch | None:
    """Find the tenant whose secret hashes to the same digest as `secret`."""
    wanted = link_secret.digest(secret)
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


async def touch_secret(pool: asyncpg.Pool, secret: SecretInfo) -> None:
    now = dt.datetime.now(dt.UTC)
    if secret.last_used_at and now - secret.last_used_at < LAST_USED_RESOLUTION:
        return
    await pool.execute(
        "UPDATE tenant.link_secrets SET last_used_at = now() WHERE id = $1", secret.id
    )
