"""SQL of the personnel service; the only module that talks to its schema."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from shared.admin_api import Conflict, NotFound

SCHEMA = "personnel"

_COLUMNS = "id, tenant_id, personnel_number, name, active, created_at, updated_at"


class PersonRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    personnel_number: str
    name: str
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class PersonNotFound(NotFound):
    def __init__(self, tenant_id: uuid.UUID, personnel_number: str) -> None:
        super().__init__(
            f"personnel number {personnel_number!r} not found in tenant {tenant_id}"
        )


def _person(row: asyncpg.Record) -> PersonRecord:
    return PersonRecord(**{key: row[key] for key in PersonRecord.__struct_fields__})


async def create_person(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, personnel_number: str, name: str
) -> PersonRecord:
    try:
        row = await pool.fetchrow(
            "INSERT INTO personnel.people (id, tenant_id, personnel_number, name)"
            f" VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
            uuid.uuid4(),
            tenant_id,
            personnel_number,
            name,
        )
    except asyncpg.UniqueViolationError:
        msg = (
            f"personnel number {personnel_number!r} already exists in tenant "
            f"{tenant_id}; update that person instead"
        )
        raise Conflict(msg) from None
    assert row is not None
    return _person(row)


async def find_person(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, personnel_number: str
) -> PersonRecord | None:
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM personnel.people"
        " WHERE tenant_id = $1 AND personnel_number = $2",
        tenant_id,
        personnel_number,
    )
    return None if row is None else _person(row)


async def get_person(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, personnel_number: str
) -> PersonRecord:
    person = await find_person(pool, tenant_id, personnel_number)
    if person is None:
        raise PersonNotFound(tenant_id, personnel_number)
    return person


async def update_person(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    personnel_number: str,
    *,
    name: str | None,
    active: bool | None,
) -> PersonRecord:
    row = await pool.fetchrow(
        "UPDATE personnel.people SET name = coalesce($3, name),"
        " active = coalesce($4, active), updated_at = now()"
        f" WHERE tenant_id = $1 AND personnel_number = $2 RETURNING {_COLUMNS}",
        tenant_id,
        personnel_number,
        name,
        active,
    )
    if row is None:
        raise PersonNotFound(tenant_id, personnel_number)
    return _person(row)


async def list_people(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, *, limit: int, after: str | None
) -> list[PersonRecord]:
    """Return up to `limit` people ordered by personnel number, after `after`."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM personnel.people WHERE tenant_id = $1"
        " AND ($2::text IS NULL OR personnel_number > $2)"
        " ORDER BY personnel_number LIMIT $3",
        tenant_id,
        after,
        limit,
    )
    return [_person(row) for row in rows]
