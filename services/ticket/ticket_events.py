"""Build the events that the ticket service emits; no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from shared import events, messages, subjects


@dataclass(frozen=True)
class OutgoingEvent:
    """An encoded event and where it goes, as one outbox row stores it."""

    event_id: uuid.UUID
    subject: str
    payload: bytes


def ticket_created(
    data: events.TicketSubmittedData,
    *,
    ticket_id: int,
    number: str,
    created_at: dt.datetime,
) -> OutgoingEvent:
    """Build the `created` event of a ticket just stored from `data`."""
    event_id = uuid.uuid4()
    event = events.TicketCreated(
        id=str(event_id),
        time=created_at,
        subject=data.reference,
        data=events.TicketCreatedData(
            ticket_id=ticket_id,
            number=number,
            tenant_id=data.tenant_id,
            submission_id=data.submission_id,
            reference=data.reference,
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
            created_at=created_at,
        ),
    )
    return OutgoingEvent(
        event_id,
        subjects.ticket_created(data.tenant_id),
        messages.ENCODER.encode(event),
    )


def status_changed(
    *,
    ticket_id: int,
    number: str,
    tenant_id: str,
    reference: str,
    from_status: events.TicketStatus,
    to_status: events.TicketStatus,
    comment: str,
    change_id: int,
    changed_at: dt.datetime,
) -> OutgoingEvent:
    """Build the `status_changed` event of one recorded change."""
    event_id = uuid.uuid4()
    event = events.TicketStatusChanged(
        id=str(event_id),
        time=changed_at,
        subject=reference,
        data=events.TicketStatusChangedData(
            ticket_id=ticket_id,
            number=number,
            tenant_id=tenant_id,
            reference=reference,
            from_status=from_status,
            to_status=to_status,
            comment=comment,
            changed_at=changed_at,
            change_id=change_id,
        ),
    )
    return OutgoingEvent(
        event_id,
        subjects.ticket_status_changed(tenant_id),
        messages.ENCODER.encode(event),
    )
