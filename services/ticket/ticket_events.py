"""Build the events that the ticket service emits; no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from shared import events, messages, subjects
from shared.random_ids import RandomIds


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
    return OutgoingEvent(
        event_id,
        subjects.ticket_created(data.tenant_id),
        messages.ENCODER.encode(
            _created(data, event_id, ticket_id, number, created_at)
        ),
    )


NUMBER_KEY = b',"number":"'
"""The bytes of a `created` event between its ticket id and its number."""

END = b'"}}'
"""The bytes that end a `created` event, after its `created_at` time."""

_EVENT_IDS = RandomIds()

_BLANK_TIME = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_BLANK = messages.ENCODER.encode(_BLANK_TIME)[1:-1]


@dataclass(frozen=True)
class CreatedTemplate:
    """A `created` event encoded before its ticket exists, cut where the
    time of storing, the ticket id and the number go.

    The event is `before_time`, the time, `before_ticket_id`, the ticket id,
    NUMBER_KEY, the number, `before_created_at`, the time again and END, with
    the time as msgspec writes it (`2026-01-01T08:00:00.123456Z`, without
    the fraction when it is zero). The statement that stores a batch fills
    in these values, so the counter rows stay locked for one round trip
    rather than three.
    """

    event_id: str
    subject: str
    before_time: bytes
    before_ticket_id: bytes
    before_created_at: bytes


def created_template(data: events.TicketSubmittedData) -> CreatedTemplate:
    """Encode the `created` event of a ticket to be stored from `data`."""
    event_id = _EVENT_IDS.uuid4()
    encoded = messages.ENCODER.encode(_created(data, event_id, 0, "", _BLANK_TIME))
    # A quote inside a JSON string is always escaped, so these markers, which
    # hold unescaped quotes, cannot match inside a value such as the subject.
    # A change to the event's fields that moves them fails loudly here.
    head, _, rest = encoded.partition(b'"time":"' + _BLANK + b'"')
    between, _, tail = rest.partition(b'"data":{"ticket_id":0' + NUMBER_KEY + b'"')
    last = b'"created_at":"' + _BLANK + END
    if not (head and between and tail.endswith(last)):
        msg = f"cannot cut the created event {encoded!r}"
        raise ValueError(msg)
    return CreatedTemplate(
        event_id=event_id,
        subject=subjects.ticket_created(data.tenant_id),
        before_time=head + b'"time":"',
        before_ticket_id=b'"' + between + b'"data":{"ticket_id":',
        before_created_at=b'"' + tail.removesuffix(last) + b'"created_at":"',
    )


def _created(
    data: events.TicketSubmittedData,
    event_id: uuid.UUID | str,
    ticket_id: int,
    number: str,
    created_at: dt.datetime,
) -> events.TicketCreated:
    return events.TicketCreated(
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
