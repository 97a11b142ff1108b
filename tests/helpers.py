"""Test clients for the admin APIs and the public form."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
from nats.js import JetStreamContext

from linkdesk.links import build_link
from linkdesk.processes import Stack
from shared import events, reference, subjects

TOKEN_FIELD = re.compile(r'name="form_token" value="([^"]+)"')


@dataclass
class TenantFixture:
    id: str
    secret: str
    secret_id: str
    personnel_number: str

    def link_query(self, number: str | None = None) -> str:
        return build_link("", self.secret, number or self.personnel_number).split(
            "?", 1
        )[1]


class Admin:
    """Calls the admin APIs of the tenant, personnel and ticket services."""

    def __init__(self, stack: Stack, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        self.tenants = httpx.Client(base_url=stack.url("tenant"), headers=headers)
        self.personnel = httpx.Client(base_url=stack.url("personnel"), headers=headers)
        self.tickets = httpx.Client(base_url=stack.url("ticket"), headers=headers)

    def __enter__(self) -> Admin:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for client in (self.tenants, self.personnel, self.tickets):
            client.close()

    def create_tenant(self, **fields: Any) -> dict[str, Any]:
        body = {"name": f"Tenant {uuid.uuid4().hex[:8]}", "intake_enabled": True}
        response = self.tenants.post("/admin/tenants", json={**body, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def issue_secret(self, tenant_id: str) -> dict[str, Any]:
        response = self.tenants.post(f"/admin/tenants/{tenant_id}/secrets")
        assert response.status_code == 201, response.text
        return dict(response.json())

    def add_person(self, tenant_id: str, number: str, name: str) -> dict[str, Any]:
        response = self.personnel.post(
            f"/admin/tenants/{tenant_id}/people",
            json={"personnel_number": number, "name": name},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    def update_tenant(self, tenant_id: str, **fields: Any) -> None:
        response = self.tenants.patch(f"/admin/tenants/{tenant_id}", json=fields)
        assert response.status_code == 200, response.text

    def update_person(self, tenant_id: str, number: str, **fields: Any) -> None:
        response = self.personnel.patch(
            f"/admin/tenants/{tenant_id}/people/{number}", json=fields
        )
        assert response.status_code == 200, response.text

    def revoke_secret(self, tenant_id: str, secret_id: str) -> None:
        response = self.tenants.post(
            f"/admin/tenants/{tenant_id}/secrets/{secret_id}/revoke"
        )
        assert response.status_code == 200, response.text

    def create_tenant_with_person(self, number: str, name: str) -> TenantFixture:
        tenant = self.create_tenant()
        issued = self.issue_secret(tenant["id"])
        self.add_person(tenant["id"], number, name)
        return TenantFixture(
            id=tenant["id"],
            secret=issued["secret"],
            secret_id=issued["info"]["id"],
            personnel_number=number,
        )

    def list_tickets(self, tenant_id: str) -> list[dict[str, Any]]:
        response = self.tickets.get(f"/admin/tenants/{tenant_id}/tickets")
        assert response.status_code == 200, response.text
        return list(response.json())

    def wait_for_tickets(
        self, tenant_id: str, count: int, timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        """Poll until the tenant has `count` tickets; fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        tickets = self.list_tickets(tenant_id)
        while len(tickets) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            tickets = self.list_tickets(tenant_id)
        assert len(tickets) == count, f"expected {count} tickets, got {tickets}"
        return tickets


LINK_PATH = "/public/TicketAllgmein/Ticket.aspx"

VALID_FIELDS = {
    "category": "IT",
    "subject": "Drucker im 2. Stock",
    "description": "Der Drucker zieht kein Papier ein.",
    "location": "Haus B, Raum 204",
    "urgency": "normal",
}


def form_token(page: httpx.Response) -> str:
    """Return the form token of a rendered form page."""
    match = TOKEN_FIELD.search(page.text)
    assert match, f"no form token in page: {page.status_code} {page.text[:300]}"
    return match.group(1)


def open_link(
    gateway: httpx.Client, query: str, path: str = LINK_PATH
) -> httpx.Response:
    # The raw query is sent as is: httpx would re-encode a `params` mapping.
    return gateway.get(f"{path}?{query}")


def post_form(
    gateway: httpx.Client, token: str, fields: dict[str, str] | None = None
) -> httpx.Response:
    from urllib.parse import urlencode

    body = urlencode(
        {"form_token": token, **(VALID_FIELDS if fields is None else fields)}
    )
    return gateway.post(
        "/public/tickets",
        content=body.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


CONSUMER_TIMEOUT = 15.0
"""Seconds the ticket consumer gets to catch up in a test."""


async def wait_until_consumed(js: JetStreamContext, sequence: int = 0) -> None:
    """Wait until the ticket service acknowledged every submission on the
    stream, and at least up to stream sequence `sequence`.

    The consumer acknowledges a message only after its transaction
    committed, so afterwards the database contains whatever it will store.
    """
    deadline = time.monotonic() + CONSUMER_TIMEOUT
    while True:
        info = await js.consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
        delivered = info.delivered.stream_seq if info.delivered else 0
        if (
            delivered >= sequence
            and info.num_pending == 0
            and info.num_ack_pending == 0
        ):
            return
        assert time.monotonic() < deadline, (
            f"the ticket consumer did not catch up within {CONSUMER_TIMEOUT} s:"
            f" delivered up to {delivered} of {sequence},"
            f" {info.num_pending} pending, {info.num_ack_pending} unacknowledged"
        )
        await asyncio.sleep(0.1)


def submitted_event(tenant_id: str, **fields: Any) -> events.TicketSubmitted:
    """Return a submitted event of a new form as the gateway builds it, with
    test values that `fields` may replace."""
    submission_id = uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    values: dict[str, Any] = {
        "personnel_number": "004711",
        "reporter_name": "Jörg Bäcker",
        "category": "IT",
        "subject": "Drucker",
        "description": "Kein Papier",
        **fields,
    }
    data = events.TicketSubmittedData(
        submission_id=str(submission_id),
        reference=reference.for_submission(submission_id),
        tenant_id=tenant_id,
        submitted_at=now,
        **values,
    )
    return events.TicketSubmitted(
        id=str(submission_id), time=now, subject=data.reference, data=data
    )
