"""SQL of the ticket service; the only module that talks to its schema."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import msgspec

from shared import events

SCHEMA = "ticket"

_COLUMNS = (
    "id, submission_id, reference, tenant_id, personnel_number, reporter_name,"
    " category, subject, description, location, urgency, language, status,"
    " submitted_at, stored_at"
)


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    submission_id: uuid.UUID
    reference: str
    tenant_id: uuid.UUID
    personnel_number: str
    reporter_name: str
    category: str
    subject: str
    description: str
    location: str
    urgency: str
    language: str
    status: str
    submitted_at: dt.datetime
    stored_at: dt.datetime


class ParkedMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    stream_sequence: int
    subject: str
    error: str
    deliveries: int
    parked_at: dt.datetime


async def store_submission(
    pool: asyncpg.Pool, data: events.TicketSubmittedData, stream_sequence: int
) -> bool:
    """Insert the ticket unless its submission is already stored.

    Returns whether a row was inserted; a redelivery returns False.
    """
    status = await pool.execute(
        "INSERT INTO ticket.tickets (submission_id, reference, tenant_id,"
        " personnel_number, reporter_name, category, subject, description,"
        " location, urgency, language, submitted_at, stream_sequence)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT (submission_id) DO NOTHING",
        uuid.UUID(data.submission_id),
        data.reference,
        uuid.UUID(data.tenant_id),
        data.personnel_number,
        data.reporter_name,
        data.category,
        data.subject,
        data.description,
        data.location,
        data.urgency,
        data.language,
        data.submitted_at,
        stream_sequence,
    )
    return bool(status == "INSERT 0 1")


async def park(
    pool: asyncpg.Pool,
    *,
    stream_sequence: int,
    subject: str,
    headers: dict[str, str],
    data: bytes,
    error: str,
    deliveries: int,
) -> None:
    await pool.execute(
        "INSERT INTO ticket.parked_messages"
        " (stream_sequence, subject, headers, data, error, deliveries)"
        " VALUES ($1, $2, $3::jsonb, $4, $5, $6)"
        " ON CONFLICT (stream_sequence) DO NOTHING",
        stream_sequence,
        subject,
        msgspec.json.encode(headers).decode(),
        data,
        error,
        deliveries,
    )


async def list_tickets(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, *, limit: int, before: int | None
) -> list[Ticket]:
    """Return a tenant's newest tickets first, continuing below id `before`."""
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM ticket.tickets WHERE tenant_id = $1"
        " AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
        tenant_id,
        before,
        limit,
    )
    return [
        Ticket(**{key: row[key] for key in Ticket.__struct_fields__}) for row in rows
    ]


async def list_parked(pool: asyncpg.Pool, *, limit: int) -> list[ParkedMessage]:
    rows = await pool.fetch(
        "SELECT id, stream_sequence, subject, error, deliveries, parked_at"
        " FROM ticket.parked_messages ORDER BY id LIMIT $1",
        limit,
    )
    return [
        ParkedMessage(**{key: row[key] for key in ParkedMessage.__struct_fields__})
        for row in rows
    ]
