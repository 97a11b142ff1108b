"""A `created` event cut into a template and filled in again reads as the
event encoded whole."""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
import pytest

from services.ticket import ticket_events
from shared import events, messages


def submitted(**fields: str) -> events.TicketSubmittedData:
    values = {
        "personnel_number": "004711",
        "reporter_name": "Jörg Bäcker",
        "category": "IT",
        "subject": "Drucker",
        "description": "Kein Papier",
        **fields,
    }
    return events.TicketSubmittedData(
        submission_id=str(uuid.uuid4()),
        reference="T-ABCDE-FGHJK",
        tenant_id=str(uuid.uuid4()),
        submitted_at=dt.datetime(2026, 3, 1, 7, 30, tzinfo=dt.UTC),
        **values,
    )


def fill(
    template: ticket_events.CreatedTemplate, ticket_id: int, number: str, time: bytes
) -> bytes:
    return b"".join(
        [
            template.before_time,
            time,
            template.before_ticket_id,
            str(ticket_id).encode(),
            ticket_events.NUMBER_KEY,
            number.encode(),
            template.before_created_at,
            time,
            ticket_events.END,
        ]
    )


@pytest.mark.parametrize(
    "fields",
    [
        {},
        # Values that contain the markers the template is cut at, as a reporter
        # could type them.
        {"subject": '"time":"2000-01-01T00:00:00Z"'},
        {"description": '"data":{"ticket_id":0,"number":"",'},
        {"description": '"created_at":"2000-01-01T00:00:00Z"}}'},
        {"reporter_name": 'Zoë "Q" \\ Ünal', "location": "\u2028 \U0001f600"},
    ],
)
@pytest.mark.parametrize("microsecond", [0, 100, 123456])
def test_filled_template_is_the_event(fields: dict[str, str], microsecond: int) -> None:
    data = submitted(**fields)
    created_at = dt.datetime(2026, 12, 5, 9, 1, 2, microsecond, tzinfo=dt.UTC)
    template = ticket_events.created_template(data)

    filled = fill(
        template,
        4711,
        "2026-000042",
        messages.ENCODER.encode(created_at)[1:-1],
    )

    whole = ticket_events.ticket_created(
        data, ticket_id=4711, number="2026-000042", created_at=created_at
    )
    decoded = msgspec.json.decode(filled, type=events.TicketCreated)
    assert decoded.id == str(template.event_id)
    assert filled == whole.payload.replace(
        str(whole.event_id).encode(), str(template.event_id).encode()
    )
    assert decoded.data.ticket_id == 4711
    assert decoded.data.created_at == created_at
    assert template.subject == whole.subject
