"""Ticket events on the JetStream stream: CloudEvents 1.0 envelopes in JSON.

Other systems subscribe to these, so every change keeps old readers working:
new fields get defaults, and nothing is renamed or retyped. The JSON Schemas
and the AsyncAPI document in `docs/events/` are generated from these structs
(`python -m linkdesk.schemas`).

Events never carry a secret. Personnel data is limited to the personnel
number and the display name of the reporter.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

import msgspec

from shared.messages import Message

Urgency = Literal["low", "normal", "high"]

TicketStatus = Literal["new", "in_progress", "resolved", "closed"]
"""Lifecycle of a ticket: new → in_progress → resolved → closed; a resolved or
closed ticket can be reopened to in_progress."""

TicketId = Annotated[
    int, msgspec.Meta(ge=1, description="Ticket id, unique across all tenants.")
]
TicketNumber = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[0-9]{4}-[0-9]{6,}$",
        description="Number of the ticket within its tenant: year and counter, "
        "for example 2026-000042.",
        examples=["2026-000042"],
    ),
]
TenantId = Annotated[str, msgspec.Meta(description="Tenant id (UUID).")]
Timestamp = Annotated[
    dt.datetime,
    msgspec.Meta(tz=True, extra_json_schema={"format": "date-time"}),
]
"""A timezone-aware point in time, encoded as RFC 3339 text. Decoding rejects
a time without an offset, which each reader would place in its own zone."""
Reference = Annotated[
    str,
    msgspec.Meta(
        description="Reference shown to the reporter after submitting, "
        "for example T-7KQ2X-M9R4P.",
    ),
]

SUBMITTED_TYPE: Final = "ch.linkdesk.ticket.submitted.v1"
CREATED_TYPE: Final = "ch.linkdesk.ticket.created.v1"
STATUS_CHANGED_TYPE: Final = "ch.linkdesk.ticket.status_changed.v1"
TICKET_SOURCE: Final = "/linkdesk/ticket"
"""CloudEvents `source` of the events that the ticket service emits."""


class TicketSubmittedData(Message, frozen=True, kw_only=True):
    """A ticket as the reporter submitted it, before the ticket service stored it.

    Personnel data is limited to the number and the display name.
    """

    submission_id: str
    reference: str
    tenant_id: str
    personnel_number: str
    reporter_name: str
    category: str
    subject: str
    description: str
    location: str = ""
    urgency: Urgency = "normal"
    language: str = "de"
    submitted_at: Timestamp


class TicketSubmitted(Message, frozen=True, kw_only=True):
    """CloudEvents 1.0 envelope of a submission (structured JSON mode)."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "/linkdesk/gateway"
    type: Literal["ch.linkdesk.ticket.submitted.v1"] = "ch.linkdesk.ticket.submitted.v1"
    time: Timestamp
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: TicketSubmittedData


class TicketCreatedData(Message, frozen=True, kw_only=True):
    """A ticket as the ticket service stored it, with its number.

    Personnel data is limited to the number and the display name.
    """

    ticket_id: TicketId
    number: TicketNumber
    tenant_id: TenantId
    submission_id: Annotated[
        str, msgspec.Meta(description="Id of the submitted form (UUID).")
    ]
    reference: Reference
    personnel_number: Annotated[
        str, msgspec.Meta(description="Personnel number of the reporter.")
    ]
    reporter_name: Annotated[
        str, msgspec.Meta(description="Display name of the reporter.")
    ]
    category: str
    subject: str
    description: str
    location: str = ""
    urgency: Urgency = "normal"
    language: Annotated[
        str, msgspec.Meta(description="Language of the form (de, en, fr or it).")
    ] = "de"
    status: TicketStatus = "new"
    submitted_at: Timestamp
    created_at: Annotated[
        Timestamp, msgspec.Meta(description="When the ticket was stored.")
    ]


class TicketCreated(Message, frozen=True, kw_only=True):
    """CloudEvents 1.0 envelope: a submission was stored as a new ticket.

    The ticket service's outbox publishes it once per ticket id. A repeat
    after a crash has the same `id`; JetStream drops it within the stream's
    duplicate window.
    """

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[
        str, msgspec.Meta(description="Event id (UUID); also the Nats-Msg-Id.")
    ]
    source: str = TICKET_SOURCE
    type: Literal["ch.linkdesk.ticket.created.v1"] = "ch.linkdesk.ticket.created.v1"
    time: Timestamp
    subject: Annotated[
        str, msgspec.Meta(description="Reference of the ticket, as in `data`.")
    ]
    datacontenttype: Literal["application/json"] = "application/json"
    data: TicketCreatedData


class TicketStatusChangedData(Message, frozen=True, kw_only=True):
    """A change of a ticket's status by the help desk.

    It does not say who made the change; the ticket history does.
    """

    ticket_id: TicketId
    number: TicketNumber
    tenant_id: TenantId
    reference: Reference
    from_status: TicketStatus
    to_status: TicketStatus
    comment: Annotated[
        str,
        msgspec.Meta(
            description="Comment that the help desk wrote with the change; "
            "empty when none."
        ),
    ] = ""
    changed_at: Timestamp
    change_id: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            description="Id of the change in the ticket's history; it grows "
            "with every change, so it orders the changes of one ticket.",
        ),
    ]


class TicketStatusChanged(Message, frozen=True, kw_only=True):
    """CloudEvents 1.0 envelope: a ticket moved from one status to another."""

    specversion: Literal["1.0"] = "1.0"
    id: Annotated[
        str, msgspec.Meta(description="Event id (UUID); also the Nats-Msg-Id.")
    ]
    source: str = TICKET_SOURCE
    type: Literal["ch.linkdesk.ticket.status_changed.v1"] = (
        "ch.linkdesk.ticket.status_changed.v1"
    )
    time: Timestamp
    subject: Annotated[
        str, msgspec.Meta(description="Reference of the ticket, as in `data`.")
    ]
    datacontenttype: Literal["application/json"] = "application/json"
    data: TicketStatusChangedData


TicketEvent = TicketSubmitted | TicketCreated | TicketStatusChanged

EVENT_TYPES: Final[dict[str, type[TicketEvent]]] = {
    "submitted": TicketSubmitted,
    "created": TicketCreated,
    "status_changed": TicketStatusChanged,
}
"""Envelope type of each ticket event kind, keyed by the last subject token."""
