"""Ticket events on the JetStream stream: CloudEvents 1.0 envelopes in JSON.

Other systems subscribe to these, so every change keeps old readers working:
new fields get defaults, and nothing is renamed or retyped.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from shared.messages import Message

Urgency = Literal["low", "normal", "high"]


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
    submitted_at: dt.datetime


class TicketSubmitted(Message, frozen=True, kw_only=True):
    """CloudEvents 1.0 envelope of a submission (structured JSON mode)."""

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "/linkdesk/gateway"
    type: Literal["ch.linkdesk.ticket.submitted.v1"] = "ch.linkdesk.ticket.submitted.v1"
    time: dt.datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: TicketSubmittedData
