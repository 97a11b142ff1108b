"""SQL of the personnel service; the only module that talks to its schema."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from services.personnel.csv_import import Row as ImportRow
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
            f"personnel number {personnel_number!r} not found in tenant {tenant_id};"
            " check the number and the tenant id"
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


class PersonUpdated(msgspec.Struct, frozen=True, kw_only=True):
    person: PersonRecord
    changed: list[str]
    """Fields whose stored value changed; empty when the request changed nothing."""


async def update_person(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    personnel_number: str,
    *,
    name: str | None,
    active: bool | None,
) -> PersonUpdated:
    """Set the name and/or the active flag; None leaves a field as it is."""
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM personnel.people"
            " WHERE tenant_id = $1 AND personnel_number = $2 FOR UPDATE",
            tenant_id,
            personnel_number,
        )
        if row is None:
            raise PersonNotFound(tenant_id, personnel_number)
        current = _person(row)
        changed = [
            field
            for field, value in (("name", name), ("active", active))
            if value is not None and getattr(current, field) != value
        ]
        if not changed:
            return PersonUpdated(person=current, changed=[])
        row = await connection.fetchrow(
            "UPDATE personnel.people SET name = coalesce($3, name),"
            " active = coalesce($4, active), updated_at = now()"
            f" WHERE tenant_id = $1 AND personnel_number = $2 RETURNING {_COLUMNS}",
            tenant_id,
            personnel_number,
            name,
            active,
        )
        assert row is not None
    return PersonUpdated(person=_person(row), changed=changed)


async def list_people(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    after: str | None,
    query: str | None,
) -> list[PersonRecord]:
    """Return up to `limit` people ordered by personnel number, after `after`.

    `query` keeps the people whose number starts with it or whose name
    contains it, both compared case-insensitively (see `fold_case` in the
    migrations).
    """
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM personnel.people WHERE tenant_id = $1"
        " AND ($2::text IS NULL OR personnel_number > $2)"
        " AND ($4::text IS NULL"
        "  OR starts_with(personnel.fold_case(personnel_number),"
        "   personnel.fold_case($4))"
        "  OR strpos(personnel.fold_case(name), personnel.fold_case($4)) > 0)"
        " ORDER BY personnel_number LIMIT $3",
        tenant_id,
        after,
        limit,
        query,
    )
    return [_person(row) for row in rows]


# --- CSV import -------------------------------------------------------------


class ImportPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Changes of an import as personnel numbers (in a dry run, the changes
    it would make)."""

    added: list[str]
    updated: list[str]
    deactivated: list[str]
    unchanged: list[str]


class ImportConflict(Conflict):
    def __init__(self, tenant_id: uuid.UUID) -> None:
        super().__init__(
            f"a person was added to tenant {tenant_id} while the import ran, "
            "so nothing was applied; run the import again"
        )


def _import_lock_key(tenant_id: uuid.UUID) -> int:
    digest = hashlib.sha256(f"linkdesk-personnel-import:{tenant_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _plan(
    existing: dict[str, tuple[str, bool]],
    rows: Sequence[ImportRow],
    deactivate_missing: bool,
) -> tuple[ImportPlan, list[ImportRow], list[tuple[str, str, bool]]]:
    """Compare the file with the stored people; return the plan, the rows to
    insert and the `(number, name, active)` updates."""
    plan = ImportPlan(added=[], updated=[], deactivated=[], unchanged=[])
    inserts: list[ImportRow] = []
    updates: list[tuple[str, str, bool]] = []
    for row in rows:
        stored = existing.get(row.personnel_number)
        if stored is None:
            plan.added.append(row.personnel_number)
            inserts.append(row)
        elif stored == (row.name, row.active):
            plan.unchanged.append(row.personnel_number)
        else:
            updates.append((row.personnel_number, row.name, row.active))
            if stored[1] and not row.active:
                plan.deactivated.append(row.personnel_number)
            else:
                plan.updated.append(row.personnel_number)
    if deactivate_missing:
        listed = {row.personnel_number for row in rows}
        for number, (name, active) in sorted(existing.items()):
            if active and number not in listed:
                plan.deactivated.append(number)
                updates.append((number, name, False))
    return plan, inserts, updates


async def import_people(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    rows: Sequence[ImportRow],
    *,
    deactivate_missing: bool,
    dry_run: bool,
) -> ImportPlan:
    """Add and update the people of `rows` in one transaction.

    A dry run computes the same plan and writes nothing. Imports of one
    tenant run one after another (advisory lock), so two imports cannot
    interleave their changes.
    """
    async with pool.acquire() as connection, connection.transaction():
        if not dry_run:
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1)", _import_lock_key(tenant_id)
            )
        stored = await connection.fetch(
            "SELECT personnel_number, name, active FROM personnel.people"
            " WHERE tenant_id = $1" + ("" if dry_run else " FOR UPDATE"),
            tenant_id,
        )
        existing = {r["personnel_number"]: (r["name"], r["active"]) for r in stored}
        plan, inserts, updates = _plan(existing, rows, deactivate_missing)
        if dry_run:
            return plan
        try:
            await connection.execute(
                "INSERT INTO personnel.people"
                " (id, tenant_id, personnel_number, name, active)"
                " SELECT u.id, $1, u.number, u.name, u.active"
                " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bool[])"
                " AS u(id, number, name, active)",
                tenant_id,
                [uuid.uuid4() for _ in inserts],
                [row.personnel_number for row in inserts],
                [row.name for row in inserts],
                [row.active for row in inserts],
            )
        except asyncpg.UniqueViolationError:
            raise ImportConflict(tenant_id) from None
        await connection.execute(
            "UPDATE personnel.people p"
            " SET name = u.name, active = u.active, updated_at = now()"
            " FROM unnest($2::text[], $3::text[], $4::bool[])"
            " AS u(number, name, active)"
            " WHERE p.tenant_id = $1 AND p.personnel_number = u.number",
            tenant_id,
            [number for number, _, _ in updates],
            [name for _, name, _ in updates],
            [active for _, _, active in updates],
        )
    return plan
