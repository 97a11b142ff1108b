"""SQL of the ticket service; the only module that talks to its schema."""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from services.ticket import lifecycle, ticket_events
from shared import events
from shared.admin_api import Conflict, NotFound

logger = logging.getLogger(__name__)

SCHEMA = "ticket"

_COLUMNS = (
    "id, number, submission_id, reference, tenant_id, personnel_number,"
    " reporter_name, category, subject, description, location, urgency, language,"
    " status, submitted_at, stored_at, updated_at"
)

Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
)
"""A connection of its own or one acquired from the pool."""

_NUMBER = re.compile(r"^[0-9]{4}-[0-9]{6,}$")
_REFERENCE = re.compile(r"^T-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$")
"""The reference a reporter is shown after submitting (`shared.reference`)."""


class Ticket(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    number: str | None
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
    status: events.TicketStatus
    submitted_at: dt.datetime
    stored_at: dt.datetime
    updated_at: dt.datetime | None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One status change; the first entry of a ticket has no `from_status`."""

    id: int
    from_status: events.TicketStatus | None
    to_status: events.TicketStatus
    comment: str
    changed_by: str
    changed_at: dt.datetime


class TicketDetail(msgspec.Struct, frozen=True, kw_only=True):
    ticket: Ticket
    history: list[HistoryEntry]


class ParkedMessage(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    stream_sequence: int
    subject: str
    error: str
    deliveries: int
    parked_at: dt.datetime
    replayed_at: dt.datetime | None
    replayed_by: str | None
    replay_sequence: int | None


class ParkedMessageData(msgspec.Struct, frozen=True, kw_only=True):
    """A parked message with its headers and bytes, for replaying it."""

    message: ParkedMessage
    headers: dict[str, str]
    data: bytes


@dataclass(frozen=True)
class TicketFilter:
    """Conditions of a ticket listing; None matches everything."""

    status: events.TicketStatus | None = None
    category: str | None = None
    personnel_number: str | None = None
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None


class TicketNotFound(NotFound):
    def __init__(self, tenant_id: uuid.UUID, ticket: str) -> None:
        super().__init__(f"ticket {ticket} not found in tenant {tenant_id}")


class InvalidTicketReference(ValueError):
    """A ticket path parameter that is neither an id nor a number (HTTP 400)."""


class ParkedMessageNotFound(NotFound):
    def __init__(self, parked_id: int) -> None:
        super().__init__(f"parked message {parked_id} not found")


class AlreadyReplayed(Conflict):
    def __init__(self, parked_id: int, replayed_at: dt.datetime) -> None:
        super().__init__(
            f"parked message {parked_id} was already replayed at "
            f"{replayed_at.isoformat()}; its replay is parked again if it fails"
        )


def _ticket(row: asyncpg.Record) -> Ticket:
    return Ticket(**{key: row[key] for key in Ticket.__struct_fields__})


def _history(row: asyncpg.Record) -> HistoryEntry:
    return HistoryEntry(**{key: row[key] for key in HistoryEntry.__struct_fields__})


def _parked(row: asyncpg.Record) -> ParkedMessage:
    return ParkedMessage(**{key: row[key] for key in ParkedMessage.__struct_fields__})


async def _insert_outbox(
    connection: Connection, event: ticket_events.OutgoingEvent
) -> None:
    await connection.execute(
        "INSERT INTO ticket.outbox (event_id, subject, payload) VALUES ($1, $2, $3)",
        event.event_id,
        event.subject,
        event.payload,
    )


# --- submissions ------------------------------------------------------------

DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    TimeoutError,
)
"""Errors that show the database is out of reach rather than that a
submission is wrong. After one of them the transaction is lost."""

StoreResult: TypeAlias = "Ticket | asyncpg.PostgresError | ValueError | None"
"""Outcome of one submission in `store_submissions`: the new ticket, None for
a submission that is already stored, or the error that kept it out."""


@dataclass(frozen=True)
class Submission:
    """A submission to store and the stream sequence of its message."""

    data: events.TicketSubmittedData
    stream_sequence: int


class _Duplicate(Exception):
    """Rolls back the counter increment of a submission that is already stored."""


async def store_submission(
    pool: asyncpg.Pool,
    data: events.TicketSubmittedData,
    stream_sequence: int,
    *,
    number_zone: zoneinfo.ZoneInfo,
) -> Ticket | None:
    """Store a submission as a ticket with its number, history and `created` event.

    Everything is written in one transaction. Returns the new ticket, or None
    when the submission is already stored (a redelivery); then nothing changes,
    and no number is used up.
    """
    async with pool.acquire() as connection, connection.transaction():
        return await _store_one(connection, data, stream_sequence, number_zone)


async def store_submissions(
    connection: Connection,
    submissions: Sequence[Submission],
    *,
    number_zone: zoneinfo.ZoneInfo,
) -> list[StoreResult]:
    """Store submissions, each with its number, history and `created` event.
    Returns one result per submission, in the order given.

    Raises ValueError when a tenant id is not a UUID; see `store_batch`.
    """
    return await store_batch(
        connection, prepare_batch(submissions, number_zone=number_zone)
    )


@dataclass(frozen=True)
class PreparedBatch:
    """Submissions in lock order with the arguments of the statement that
    stores them, built before the batch waits for the database."""

    order: list[int]
    """Index in the given submissions of each submission in lock order."""
    ordered: list[Submission]
    tenant_ids: list[uuid.UUID]
    number_zone: zoneinfo.ZoneInfo
    arguments: list[object]


def prepare_batch(
    submissions: Sequence[Submission], *, number_zone: zoneinfo.ZoneInfo
) -> PreparedBatch:
    """Sort submissions into lock order and build the arguments of the
    statement that stores them; raise ValueError when a tenant id is not a
    UUID."""
    tenants = {
        tenant_id: uuid.UUID(tenant_id)
        for tenant_id in {item.data.tenant_id for item in submissions}
    }
    # Counter rows are locked in one order in every transaction, so two
    # replicas that store batches of the same tenants wait for each other
    # rather than deadlock.
    order = sorted(
        range(len(submissions)),
        key=lambda index: _lock_order(submissions[index], tenants, number_zone),
    )
    ordered = [submissions[index] for index in order]
    keys = [
        (
            tenants[item.data.tenant_id],
            lifecycle.number_year(item.data.submitted_at, number_zone),
        )
        for item in ordered
    ]
    # A dict keeps the order in which keys first appear, which is the lock
    # order.
    counts: dict[tuple[uuid.UUID, int], int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    # How far each number lies below its counter's new value: the last
    # submission of a key gets the new value itself.
    remaining = dict(counts)
    below_last = []
    for key in keys:
        remaining[key] -= 1
        below_last.append(remaining[key])
    created = [ticket_events.created_template(item.data) for item in ordered]
    data = [item.data for item in ordered]
    arguments: list[object] = [
        [tenant_id for tenant_id, _ in counts],
        [year for _, year in counts],
        list(counts.values()),
        # asyncpg encodes a UUID from its text without a uuid.UUID.
        [item.submission_id for item in data],
        [item.reference for item in data],
        [tenant_id for tenant_id, _ in keys],
        [year for _, year in keys],
        below_last,
        [item.personnel_number for item in data],
        [item.reporter_name for item in data],
        [item.category for item in data],
        [item.subject for item in data],
        [item.description for item in data],
        [item.location for item in data],
        [item.urgency for item in data],
        [item.language for item in data],
        [item.submitted_at for item in data],
        [item.stream_sequence for item in ordered],
        [template.event_id for template in created],
        [template.subject for template in created],
        [template.before_time for template in created],
        [template.before_ticket_id for template in created],
        [template.before_created_at for template in created],
        ticket_events.NUMBER_KEY,
        ticket_events.END,
    ]
    return PreparedBatch(
        order, ordered, [tenant_id for tenant_id, _ in keys], number_zone, arguments
    )


async def store_batch(
    connection: Connection,
    batch: PreparedBatch,
    *,
    ended: Callable[[], None] | None = None,
) -> list[StoreResult]:
    """Store a prepared batch; return one result per submission, in the
    order given to `prepare_batch`.

    The batch is stored by one statement, which is a transaction of its own,
    or in a savepoint when the connection is in a transaction already. If
    that fails, for example because a submission is stored already, nothing
    of it stays. The batch is then stored again one submission at a time,
    each in a savepoint of its own, so a failing one uses up no number and
    the others are still stored. Numbers are handed out per tenant and year
    in the order of the stream sequences.

    `ended` is called once the statement, or the one-at-a-time pass, has
    succeeded, before the results are built. Without a caller's transaction
    the batch then holds no counter lock any more. Raises one of
    DATABASE_DOWN when the database is out of reach, without calling
    `ended`. The caller's transaction is then lost, and a commit of its own
    may or may not have happened.
    """
    results: list[StoreResult] | None = None
    try:
        if connection.is_in_transaction():
            async with connection.transaction():
                rows = await connection.fetch(_STORE_BATCH, *batch.arguments)
        else:
            rows = await connection.fetch(_STORE_BATCH, *batch.arguments)
    except DATABASE_DOWN:
        raise
    except (asyncpg.PostgresError, ValueError) as exc:
        if (
            isinstance(exc, asyncpg.UniqueViolationError)
            and exc.constraint_name == _SUBMISSION_KEY
        ):
            # A redelivery, a repeat within the batch, or another
            # transaction's insert. One at a time finds the stored ones and
            # hands out numbers only to the others.
            logger.debug(
                "batch of %d contains stored submissions, "
                "storing each submission on its own",
                len(batch.ordered),
                extra={"event": "batch_store_fallback"},
            )
        else:
            logger.info(
                "batch of %d failed, storing each submission on its own",
                len(batch.ordered),
                extra={"event": "batch_store_fallback", "error": repr(exc)},
            )
        results = await _store_each(connection, batch.ordered, batch.number_zone)
    if ended is not None:
        ended()
    if results is None:
        results = [
            _new_ticket(item, tenant_id, row)
            for item, tenant_id, row in zip(
                batch.ordered, batch.tenant_ids, rows, strict=True
            )
        ]
    by_index = dict(zip(batch.order, results, strict=True))
    return [by_index[index] for index in range(len(batch.order))]


def _new_ticket(item: Submission, tenant_id: uuid.UUID, row: asyncpg.Record) -> Ticket:
    data = item.data
    return Ticket(
        id=row["id"],
        number=row["number"],
        submission_id=uuid.UUID(data.submission_id),
        reference=data.reference,
        tenant_id=tenant_id,
        personnel_number=data.personnel_number,
        reporter_name=data.reporter_name,
        category=data.category,
        subject=data.subject,
        description=data.description,
        location=data.location,
        urgency=data.urgency,
        language=data.language,
        status="new",
        submitted_at=data.submitted_at,
        stored_at=row["stored_at"],
        updated_at=None,
    )


def _lock_order(
    submission: Submission,
    tenants: dict[str, uuid.UUID],
    number_zone: zoneinfo.ZoneInfo,
) -> tuple[uuid.UUID, int, int]:
    data = submission.data
    year = lifecycle.number_year(data.submitted_at, number_zone)
    return tenants[data.tenant_id], year, submission.stream_sequence


async def _store_each(
    connection: Connection,
    submissions: Sequence[Submission],
    number_zone: zoneinfo.ZoneInfo,
) -> list[StoreResult]:
    results: list[StoreResult] = []
    async with connection.transaction():
        for item in submissions:
            try:
                ticket = await _store_one(
                    connection, item.data, item.stream_sequence, number_zone
                )
            except DATABASE_DOWN:
                raise
            except (asyncpg.PostgresError, ValueError) as exc:
                results.append(exc)
            else:
                results.append(ticket)
    return results


async def _store_one(
    connection: Connection,
    data: events.TicketSubmittedData,
    stream_sequence: int,
    number_zone: zoneinfo.ZoneInfo,
) -> Ticket | None:
    """Store one submission in a transaction of its own, or in a savepoint
    when the connection is in a transaction already."""
    year = lifecycle.number_year(data.submitted_at, number_zone)
    try:
        async with connection.transaction():
            counter = await connection.fetchval(
                "INSERT INTO ticket.ticket_counters (tenant_id, year, last_value)"
                " VALUES ($1, $2, 1) ON CONFLICT (tenant_id, year)"
                " DO UPDATE SET last_value = ticket_counters.last_value + 1"
                " RETURNING last_value",
                uuid.UUID(data.tenant_id),
                year,
            )
            row = await connection.fetchrow(
                "INSERT INTO ticket.tickets (submission_id, number, reference,"
                " tenant_id, personnel_number, reporter_name, category, subject,"
                " description, location, urgency, language, submitted_at,"
                " stream_sequence)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                f" ON CONFLICT (submission_id) DO NOTHING RETURNING {_COLUMNS}",
                uuid.UUID(data.submission_id),
                lifecycle.format_number(year, counter),
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
            if row is None:
                raise _Duplicate
            ticket = _ticket(row)
            await connection.execute(
                "INSERT INTO ticket.ticket_history"
                " (ticket_id, from_status, to_status, changed_by, changed_at)"
                " VALUES ($1, NULL, 'new', 'submission', $2)",
                ticket.id,
                ticket.stored_at,
            )
            assert ticket.number is not None
            await _insert_outbox(
                connection,
                ticket_events.ticket_created(
                    data,
                    ticket_id=ticket.id,
                    number=ticket.number,
                    created_at=ticket.stored_at,
                ),
            )
    except _Duplicate:
        return None
    return ticket


_SUBMISSION_KEY = "tickets_submission_id_key"
"""The unique constraint that a submission stored already violates."""


def _padded(value: str, width: int) -> str:
    """SQL for the text of the integer `value`, padded with zeros to `width`
    digits and longer when it has more, as `lifecycle.format_number` writes."""
    text = f"({value})::text"
    return f"lpad({text}, greatest({width}, length({text})), '0')"


def _rfc3339(value: str) -> str:
    """SQL for the timestamptz `value` as msgspec writes it: UTC with `Z`, and
    microseconds only when they are not zero."""
    utc = f"({value} AT TIME ZONE 'UTC')"
    return (
        f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"
        f" || CASE WHEN extract(microseconds FROM {utc})::bigint % 1000000 = 0"
        f" THEN '' ELSE to_char({utc}, '.US') END || 'Z'"
    )


_STORE_BATCH = (
    "WITH counter AS ("
    " INSERT INTO ticket.ticket_counters (tenant_id, year, last_value)"
    " SELECT tenant_id, year, added"
    " FROM unnest($1::uuid[], $2::integer[], $3::integer[])"
    " WITH ORDINALITY AS counter(tenant_id, year, added, position)"
    " ORDER BY position"
    " ON CONFLICT (tenant_id, year)"
    " DO UPDATE SET last_value = ticket_counters.last_value + excluded.last_value"
    " RETURNING tenant_id, year, last_value"
    "), ids AS ("
    " SELECT array_agg(id ORDER BY id) AS ids FROM ("
    "  SELECT nextval('ticket.tickets_id_seq') AS id"
    "  FROM generate_series(1, cardinality($4::uuid[]))"
    "  WHERE (SELECT count(*) FROM counter) > 0"
    " ) AS taken"
    "), numbered AS ("
    " SELECT submission.*, ids.ids[submission.position] AS id,"
    f" {_padded('submission.year', 4)} || '-'"
    f" || {_padded('counter.last_value - submission.below_last', 6)} AS number"
    " FROM unnest($4::uuid[], $5::text[], $6::uuid[], $7::integer[],"
    " $8::integer[], $9::text[], $10::text[], $11::text[], $12::text[],"
    " $13::text[], $14::text[], $15::text[], $16::text[], $17::timestamptz[],"
    " $18::bigint[], $19::uuid[], $20::text[], $21::bytea[], $22::bytea[],"
    " $23::bytea[])"
    " WITH ORDINALITY AS submission(submission_id, reference, tenant_id, year,"
    " below_last, personnel_number, reporter_name, category, subject,"
    " description, location, urgency, language, submitted_at, stream_sequence,"
    " event_id, event_subject, before_time, before_ticket_id,"
    " before_created_at, position)"
    " JOIN counter USING (tenant_id, year)"
    " CROSS JOIN ids"
    "), inserted AS ("
    " INSERT INTO ticket.tickets (id, submission_id, number, reference, tenant_id,"
    " personnel_number, reporter_name, category, subject, description, location,"
    " urgency, language, submitted_at, stream_sequence)"
    " OVERRIDING SYSTEM VALUE"
    " SELECT id, submission_id, number, reference, tenant_id, personnel_number,"
    " reporter_name, category, subject, description, location, urgency,"
    " language, submitted_at, stream_sequence"
    " FROM numbered ORDER BY position"
    " RETURNING id, stored_at"
    "), history AS ("
    " INSERT INTO ticket.ticket_history"
    " (ticket_id, from_status, to_status, changed_by, changed_at)"
    " SELECT id, NULL, 'new', 'submission', stored_at FROM inserted ORDER BY id"
    "), stamp AS ("
    f" SELECT convert_to({_rfc3339('now()')}, 'UTF8') AS time"
    "), created AS ("
    " INSERT INTO ticket.outbox (event_id, subject, payload)"
    " SELECT event_id, event_subject, before_time || stamp.time"
    " || before_ticket_id || convert_to(id::text, 'UTF8') || $24::bytea"
    " || convert_to(number, 'UTF8') || before_created_at || stamp.time"
    " || $25::bytea"
    " FROM numbered CROSS JOIN stamp ORDER BY position"
    ") SELECT id, number, now() AS stored_at FROM numbered ORDER BY position"
)
"""Raise the counters, take the ids, and insert the tickets with their first
history rows and `created` events. Return each ticket's id and number, in
the order given, with the transaction's time, which is every ticket's
`stored_at`.

The ids are taken only after every counter row is locked (the count reads
the whole `counter` first). Otherwise a batch that waits for another
transaction's counter lock would hold ids older than that transaction's,
and a tenant's later ticket numbers could get smaller ids."""


# --- tickets ----------------------------------------------------------------


async def list_tickets(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    *,
    limit: int,
    before: int | None,
    where: TicketFilter | None = None,
) -> list[Ticket]:
    """Return a tenant's newest tickets first, continuing below id `before`.

    `created_from` is inclusive and `created_to` exclusive; both compare with
    the time the ticket was stored.
    """
    where = where or TicketFilter()
    rows = await pool.fetch(
        f"SELECT {_COLUMNS} FROM ticket.tickets WHERE tenant_id = $1"
        " AND ($2::bigint IS NULL OR id < $2)"
        " AND ($3::text IS NULL OR status = $3)"
        " AND ($4::text IS NULL OR category = $4)"
        " AND ($5::text IS NULL OR personnel_number = $5)"
        " AND ($6::timestamptz IS NULL OR stored_at >= $6)"
        " AND ($7::timestamptz IS NULL OR stored_at < $7)"
        " ORDER BY id DESC LIMIT $8",
        tenant_id,
        before,
        where.status,
        where.category,
        where.personnel_number,
        where.created_from,
        where.created_to,
        limit,
    )
    return [_ticket(row) for row in rows]


async def find_by_submission(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, submission_id: uuid.UUID
) -> Ticket | None:
    """Return the tenant's ticket stored from the form with that submission id."""
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM ticket.tickets"
        " WHERE submission_id = $1 AND tenant_id = $2",
        submission_id,
        tenant_id,
    )
    return None if row is None else _ticket(row)


def _ticket_condition(ticket: str) -> tuple[str, Any]:
    """Return the SQL condition and value that find a ticket by id, number or
    the reference that the reporter was shown.

    Raises InvalidTicketReference for anything else.
    """
    if ticket.isdigit():
        return "id = $2", int(ticket)
    if _NUMBER.match(ticket):
        return "number = $2", ticket
    # A reference is read out on the phone, so its case does not matter.
    upper = ticket.upper()
    if _REFERENCE.match(upper):
        return "reference = $2", upper
    msg = (
        f"invalid ticket {ticket!r}: expected an id such as 42, a number such "
        "as 2026-000042 or a reference such as T-7KQ2X-M9R4P"
    )
    raise InvalidTicketReference(msg)


async def get_ticket(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, ticket: str
) -> TicketDetail:
    """Return a tenant's ticket by id or number, with its history, oldest first."""
    condition, value = _ticket_condition(ticket)
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM ticket.tickets WHERE tenant_id = $1 AND {condition}",
        tenant_id,
        value,
    )
    if row is None:
        raise TicketNotFound(tenant_id, ticket)
    history = await pool.fetch(
        "SELECT id, from_status, to_status, comment, changed_by, changed_at"
        " FROM ticket.ticket_history WHERE ticket_id = $1 ORDER BY id",
        row["id"],
    )
    return TicketDetail(ticket=_ticket(row), history=[_history(h) for h in history])


async def change_status(
    pool: asyncpg.Pool,
    tenant_id: uuid.UUID,
    ticket: str,
    *,
    to_status: events.TicketStatus,
    comment: str,
    changed_by: str,
) -> TicketDetail:
    """Change a ticket's status, record it in the history and emit the event.

    The row lock serialises concurrent changes of one ticket, so each change
    is checked against the status that the one before it left. Raises
    TicketNotFound, or InvalidTransition when the lifecycle forbids the change.
    """
    condition, value = _ticket_condition(ticket)
    async with pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            f"SELECT {_COLUMNS} FROM ticket.tickets"
            f" WHERE tenant_id = $1 AND {condition} FOR UPDATE",
            tenant_id,
            value,
        )
        if row is None:
            raise TicketNotFound(tenant_id, ticket)
        current = _ticket(row)
        label = current.number or str(current.id)
        lifecycle.check_transition(label, current.status, to_status)
        change = await connection.fetchrow(
            "INSERT INTO ticket.ticket_history"
            " (ticket_id, from_status, to_status, comment, changed_by)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING id, changed_at",
            current.id,
            current.status,
            to_status,
            comment,
            changed_by,
        )
        assert change is not None
        await connection.execute(
            "UPDATE ticket.tickets SET status = $2, updated_at = $3 WHERE id = $1",
            current.id,
            to_status,
            change["changed_at"],
        )
        await _insert_outbox(
            connection,
            ticket_events.status_changed(
                ticket_id=current.id,
                number=label,
                tenant_id=str(tenant_id),
                reference=current.reference,
                from_status=current.status,
                to_status=to_status,
                comment=comment,
                change_id=change["id"],
                changed_at=change["changed_at"],
            ),
        )
    return await get_ticket(pool, tenant_id, str(current.id))


# --- outbox -----------------------------------------------------------------


class OutboxRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    event_id: uuid.UUID
    subject: str
    payload: bytes
    attempts: int
    waited: float
    """Seconds since the row was written, by the database server's clock."""


async def lock_unsent(connection: Connection, limit: int) -> list[OutboxRow]:
    """Lock and return the oldest unsent outbox rows; call inside a transaction."""
    rows = await connection.fetch(
        "SELECT id, event_id, subject, payload, attempts,"
        " extract(epoch FROM clock_timestamp() - created_at)::float8 AS waited"
        " FROM ticket.outbox"
        " WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [
        OutboxRow(**{key: row[key] for key in OutboxRow.__struct_fields__})
        for row in rows
    ]


async def mark_sent(connection: Connection, sent: Sequence[tuple[int, int]]) -> None:
    """Mark outbox rows sent, given as (outbox id, stream sequence) pairs."""
    if not sent:
        return
    await connection.execute(
        "UPDATE ticket.outbox SET sent_at = now(), stream_sequence = sent.sequence,"
        " attempts = attempts + 1, last_error = NULL"
        " FROM unnest($1::bigint[], $2::bigint[]) AS sent(id, sequence)"
        " WHERE outbox.id = sent.id",
        [outbox_id for outbox_id, _ in sent],
        [sequence for _, sequence in sent],
    )


async def record_send_failures(
    connection: Connection, failures: Sequence[tuple[int, str]]
) -> None:
    """Count a failed publish of outbox rows, given as (outbox id, error) pairs."""
    if not failures:
        return
    await connection.execute(
        "UPDATE ticket.outbox SET attempts = attempts + 1, last_error = failed.error"
        " FROM unnest($1::bigint[], $2::text[]) AS failed(id, error)"
        " WHERE outbox.id = failed.id",
        [outbox_id for outbox_id, _ in failures],
        [error[:2000] for _, error in failures],
    )


async def delete_sent_events(
    pool: asyncpg.Pool, older_than: dt.timedelta, limit: int
) -> int:
    """Delete outbox rows sent more than `older_than` ago, among the `limit`
    sent rows with the lowest ids, and return how many were deleted.

    Looking only at the lowest ids keeps each statement short. The relay
    sends rows in about id order, so the old rows are found there. A row
    sent out of order (after a failed publish, say) is deleted once it is
    old too.
    """
    # The outer condition is checked again on a row that changed while the
    # statement waited for its lock, so a row marked unsent then is kept.
    status = await pool.execute(
        "DELETE FROM ticket.outbox WHERE id IN ("
        " SELECT id FROM ("
        " SELECT id, sent_at FROM ticket.outbox WHERE sent_at IS NOT NULL"
        " ORDER BY id LIMIT $2"
        " ) AS oldest WHERE sent_at < now() - $1::interval)"
        " AND sent_at < now() - $1::interval",
        older_than,
        limit,
    )
    return int(status.split()[-1])


async def count_unsent(pool: asyncpg.Pool) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM ticket.outbox WHERE sent_at IS NULL"
    )
    return count


# --- parked messages --------------------------------------------------------


_PARKED_COLUMNS = (
    "id, stream_sequence, subject, error, deliveries, parked_at,"
    " replayed_at, replayed_by, replay_sequence"
)


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


async def list_parked(
    pool: asyncpg.Pool, *, limit: int, include_replayed: bool = False
) -> list[ParkedMessage]:
    """Return parked messages oldest first; replayed ones only when asked."""
    rows = await pool.fetch(
        f"SELECT {_PARKED_COLUMNS} FROM ticket.parked_messages"
        " WHERE $2 OR replayed_at IS NULL ORDER BY id LIMIT $1",
        limit,
        include_replayed,
    )
    return [_parked(row) for row in rows]


async def get_parked(pool: asyncpg.Pool, parked_id: int) -> ParkedMessageData:
    row = await pool.fetchrow(
        f"SELECT {_PARKED_COLUMNS}, headers, data FROM ticket.parked_messages"
        " WHERE id = $1",
        parked_id,
    )
    if row is None:
        raise ParkedMessageNotFound(parked_id)
    return ParkedMessageData(
        message=_parked(row),
        headers=msgspec.json.decode(row["headers"], type=dict[str, str]),
        data=bytes(row["data"]),
    )


async def lock_parked_for_replay(
    connection: Connection, parked_id: int
) -> ParkedMessageData:
    """Lock a parked message that was not replayed yet; call inside a transaction.

    Raises ParkedMessageNotFound or AlreadyReplayed.
    """
    row = await connection.fetchrow(
        f"SELECT {_PARKED_COLUMNS}, headers, data FROM ticket.parked_messages"
        " WHERE id = $1 FOR UPDATE",
        parked_id,
    )
    if row is None:
        raise ParkedMessageNotFound(parked_id)
    if row["replayed_at"] is not None:
        raise AlreadyReplayed(parked_id, row["replayed_at"])
    return ParkedMessageData(
        message=_parked(row),
        headers=msgspec.json.decode(row["headers"], type=dict[str, str]),
        data=bytes(row["data"]),
    )


async def mark_replayed(
    connection: Connection,
    parked_id: int,
    *,
    replayed_by: str,
    replay_sequence: int,
) -> ParkedMessage:
    row = await connection.fetchrow(
        "UPDATE ticket.parked_messages SET replayed_at = now(), replayed_by = $2,"
        f" replay_sequence = $3 WHERE id = $1 RETURNING {_PARKED_COLUMNS}",
        parked_id,
        replayed_by,
        replay_sequence,
    )
    assert row is not None, "the caller locked the row in this transaction"
    return _parked(row)


async def delete_parked(pool: asyncpg.Pool, parked_id: int) -> ParkedMessage:
    """Delete a parked message for good and return what it was."""
    row = await pool.fetchrow(
        f"DELETE FROM ticket.parked_messages WHERE id = $1 RETURNING {_PARKED_COLUMNS}",
        parked_id,
    )
    if row is None:
        raise ParkedMessageNotFound(parked_id)
    return _parked(row)
