"""The ticket service's reply to "was this form stored, and with what text?"."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import asyncpg

from services.ticket import repository
from services.ticket.submission_lookup import find_submission
from shared import events, messages, reference

UTC = zoneinfo.ZoneInfo("UTC")


async def stored(
    pool: asyncpg.Pool, tenant_id: uuid.UUID, **fields: str
) -> events.TicketSubmittedData:
    submission_id = uuid.uuid4()
    data = events.TicketSubmittedData(
        submission_id=str(submission_id),
        reference=reference.for_submission(submission_id),
        tenant_id=str(tenant_id),
        personnel_number="004711",
        reporter_name="Jörg Bäcker",
        category=fields.get("category", "IT"),
        subject=fields.get("subject", "Drucker"),
        description=fields.get("description", "Zeile 1\r\n\tZeile 2"),
        location=fields.get("location", "Raum 3"),
        urgency="high",
        submitted_at=dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC),
    )
    assert await repository.store_submission(pool, data, 1, number_zone=UTC)
    return data


def ask(data: events.TicketSubmittedData, tenant_id: str) -> messages.FindSubmission:
    return messages.FindSubmission(
        tenant_id=tenant_id, submission_id=data.submission_id
    )


async def test_stored_form_returned_with_text(ticket_pool: asyncpg.Pool) -> None:
    tenant = uuid.uuid4()
    data = await stored(ticket_pool, tenant, subject="Émile's «Drucker»")

    reply = await find_submission(ticket_pool, ask(data, str(tenant)))

    assert reply.reason is None
    assert reply.submission == messages.StoredSubmission(
        reference=data.reference,
        category="IT",
        subject="Émile's «Drucker»",
        description="Zeile 1\r\n\tZeile 2",
        location="Raum 3",
        urgency="high",
    )


async def test_other_tenants_form_unknown(ticket_pool: asyncpg.Pool) -> None:
    data = await stored(ticket_pool, uuid.uuid4())

    reply = await find_submission(ticket_pool, ask(data, str(uuid.uuid4())))

    assert reply == messages.SubmissionFound(reason="unknown_submission")


async def test_unstored_form_unknown(ticket_pool: asyncpg.Pool) -> None:
    request = messages.FindSubmission(
        tenant_id=str(uuid.uuid4()), submission_id=str(uuid.uuid4())
    )

    reply = await find_submission(ticket_pool, request)

    assert reply == messages.SubmissionFound(reason="unknown_submission")


async def test_ids_that_are_not_uuids_unknown(ticket_pool: asyncpg.Pool) -> None:
    for tenant_id, submission_id in [
        ("acme", str(uuid.uuid4())),
        (str(uuid.uuid4()), "x' OR 1=1"),
    ]:
        request = messages.FindSubmission(
            tenant_id=tenant_id, submission_id=submission_id
        )

        reply = await find_submission(ticket_pool, request)

        assert reply == messages.SubmissionFound(reason="unknown_submission")
