"""Tickets through the admin API: numbers, history, status changes, events."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from linkdesk import cli
from linkdesk.processes import Stack
from shared import events, messages, subjects
from tests.conftest import ADMIN_TOKEN
from tests.helpers import (
    Admin,
    TenantFixture,
    form_token,
    open_link,
    post_form,
    submitted_event,
)

NUMBER = re.compile(r"^\d{4}-\d{6}$")


async def publish_submission(
    nc: Client, tenant_id: str, **fields: Any
) -> events.TicketSubmitted:
    """Publish a submitted event as the gateway would, and return it."""
    event = submitted_event(tenant_id, **fields)
    data = event.data
    await nc.jetstream().publish(
        subjects.ticket_submitted(tenant_id),
        messages.ENCODER.encode(event),
        stream=subjects.TICKET_STREAM,
        headers={"Nats-Msg-Id": data.submission_id},
    )
    return event


async def read_stream(nc: Client, subject: str) -> list[bytes]:
    """Return the data of every message on `subject` now in the stream."""
    js = nc.jetstream()
    pull = await js.pull_subscribe(
        subject,
        stream=subjects.TICKET_STREAM,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, inactive_threshold=60),
    )
    found: list[bytes] = []
    try:
        for _ in range(1000):
            info = await pull.consumer_info()
            if info.num_pending == 0:
                break
            for msg in await pull.fetch(min(info.num_pending, 256), timeout=5):
                found.append(msg.data)
    finally:
        await pull.unsubscribe()
        await js.delete_consumer(subjects.TICKET_STREAM, info.name)
    return found


def wait_for_ticket(
    admin: Admin, tenant_id: str, submission_id: str, timeout: float = 15.0
) -> dict[str, Any]:
    """Poll the tenant's tickets until the submission is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ticket in admin.list_tickets(tenant_id):
            if ticket["submission_id"] == submission_id:
                return ticket
        time.sleep(0.1)
    pytest.fail(f"submission {submission_id} not stored within {timeout} s")


async def wait_for_events(
    nc: Client, subject: str, predicate: Any, count: int, timeout: float = 15.0
) -> list[dict[str, Any]]:
    """Read the stream until `count` events on `subject` match; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [
            event
            for event in (
                msgspec.json.decode(data) for data in await read_stream(nc, subject)
            )
            if predicate(event)
        ]
        if len(matching) >= count or time.monotonic() > deadline:
            return matching
        await asyncio.sleep(0.2)


@pytest.fixture
async def nc(nats_url: str) -> Any:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


def status(
    admin: Admin, tenant_id: str, ticket: object, new: str, comment: str = ""
) -> httpx.Response:
    return admin.tickets.post(
        f"/admin/tenants/{tenant_id}/tickets/{ticket}/status",
        json={"status": new, "comment": comment},
    )


async def test_form_ticket_numbered_with_created_event(
    gateway: httpx.Client, admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """A ticket posted through the form gets a number and one `created` event."""
    answer = post_form(gateway, form_token(open_link(gateway, tenant.link_query())))
    assert answer.status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)

    assert NUMBER.match(ticket["number"]), ticket["number"]
    assert ticket["number"].endswith("-000001")
    assert ticket["status"] == "new"

    created = await wait_for_events(
        nc,
        subjects.ticket_created(tenant.id),
        lambda event: event["data"]["ticket_id"] == ticket["id"],
        1,
    )
    assert len(created) == 1
    event = msgspec.convert(created[0], events.TicketCreated)
    assert event.type == events.CREATED_TYPE
    assert event.data.number == ticket["number"]
    assert event.data.submission_id == ticket["submission_id"]
    assert event.data.reporter_name == "Jörg Bäcker"
    assert event.subject == ticket["reference"]
    raw = msgspec.json.encode(created[0]).decode()
    assert tenant.secret not in raw


async def test_status_lifecycle_recorded_and_emitted(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Each allowed change lands in the history and as one event, in order."""
    submitted = await publish_submission(nc, tenant.id)
    ticket = wait_for_ticket(admin, tenant.id, submitted.data.submission_id)
    steps = [
        ("in_progress", "übernommen"),
        ("resolved", "Toner ersetzt"),
        ("closed", ""),
        ("in_progress", "wieder offen"),
        ("resolved", ""),
        ("in_progress", "nochmals"),
    ]

    for new, comment in steps:
        response = status(admin, tenant.id, ticket["number"], new, comment)
        assert response.status_code == 200, response.text
        assert response.json()["ticket"]["status"] == new

    detail = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/{ticket['id']}")
    assert detail.status_code == 200
    history = detail.json()["history"]
    assert [entry["to_status"] for entry in history] == ["new"] + [s for s, _ in steps]
    assert [entry["from_status"] for entry in history] == [
        None,
        "new",
        "in_progress",
        "resolved",
        "closed",
        "in_progress",
        "resolved",
    ]
    assert history[1]["comment"] == "übernommen"
    assert history[1]["changed_by"] == "tests"
    assert detail.json()["ticket"]["updated_at"] is not None

    changes = await wait_for_events(
        nc,
        subjects.ticket_status_changed(tenant.id),
        lambda event: event["data"]["ticket_id"] == ticket["id"],
        len(steps),
    )
    assert [(c["data"]["to_status"], c["data"]["comment"]) for c in changes] == steps
    assert [c["data"]["change_id"] for c in changes] == [e["id"] for e in history[1:]]
    for change in changes:
        msgspec.convert(change, events.TicketStatusChanged)


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], "resolved"),
        ([], "closed"),
        ([], "new"),
        (["in_progress"], "closed"),
        (["in_progress"], "new"),
        (["in_progress", "resolved"], "new"),
        (["in_progress", "resolved", "closed"], "resolved"),
    ],
)
async def test_invalid_transition_is_409(
    admin: Admin, tenant: TenantFixture, nc: Client, path: list[str], target: str
) -> None:
    """A change the lifecycle forbids is 409 naming both states; nothing changes."""
    submitted = await publish_submission(nc, tenant.id)
    ticket = wait_for_ticket(admin, tenant.id, submitted.data.submission_id)
    for step in path:
        assert status(admin, tenant.id, ticket["id"], step).status_code == 200
    current = path[-1] if path else "new"

    response = status(admin, tenant.id, ticket["id"], target)

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"from {current} to {target}" in detail
    after = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/{ticket['id']}")
    assert after.json()["ticket"]["status"] == current
    assert len(after.json()["history"]) == 1 + len(path)


async def test_other_tenants_ticket_is_404(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Tenant B's path never reaches tenant A's ticket, by id, number or
    reference."""
    other = admin.create_tenant()
    submitted = await publish_submission(nc, tenant.id)
    ticket = wait_for_ticket(admin, tenant.id, submitted.data.submission_id)

    for key in (ticket["id"], ticket["number"], ticket["reference"]):
        shown = admin.tickets.get(f"/admin/tenants/{other['id']}/tickets/{key}")
        changed = status(admin, other["id"], key, "in_progress")
        assert shown.status_code == 404, shown.text
        assert changed.status_code == 404, changed.text
        assert str(key) in shown.json()["detail"]

    unchanged = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/{ticket['id']}")
    assert unchanged.json()["ticket"]["status"] == "new"


async def test_ticket_found_by_reporter_reference(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Support can find and change a ticket by the reference the reporter
    reads out, in any case."""
    submitted = await publish_submission(nc, tenant.id)
    ticket = wait_for_ticket(admin, tenant.id, submitted.data.submission_id)
    reference = ticket["reference"]

    by_reference = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/{reference}")
    lower = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/{reference.lower()}")
    changed = status(admin, tenant.id, reference.lower(), "in_progress")

    assert by_reference.status_code == 200, by_reference.text
    assert by_reference.json()["ticket"]["id"] == ticket["id"]
    assert lower.json()["ticket"]["id"] == ticket["id"]
    assert changed.status_code == 200, changed.text
    assert changed.json()["ticket"]["status"] == "in_progress"


async def test_invalid_ticket_reference_is_400(
    admin: Admin, tenant: TenantFixture
) -> None:
    response = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets/T-ABC")

    assert response.status_code == 400
    assert "T-ABC" in response.text


async def test_list_filters_and_keyset_pages(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Filters combine; `before` continues below the last id of a page."""
    plan = [
        {"category": "IT", "personnel_number": "004711"},
        {"category": "Gebäude", "personnel_number": "004711"},
        {"category": "IT", "personnel_number": "000815"},
        {"category": "IT", "personnel_number": "004711"},
    ]
    stored = []
    for fields in plan:
        submitted = await publish_submission(nc, tenant.id, **fields)
        stored.append(wait_for_ticket(admin, tenant.id, submitted.data.submission_id))
    assert status(admin, tenant.id, stored[3]["id"], "in_progress").status_code == 200
    ids = [ticket["id"] for ticket in stored]
    path = f"/admin/tenants/{tenant.id}/tickets"

    def listed(**params: Any) -> list[int]:
        response = admin.tickets.get(path, params=params)
        assert response.status_code == 200, response.text
        return [ticket["id"] for ticket in response.json()]

    assert listed() == ids[::-1]
    assert listed(category="IT") == [ids[3], ids[2], ids[0]]
    assert listed(personnel_number="000815") == [ids[2]]
    assert listed(status="in_progress") == [ids[3]]
    assert listed(status="new", category="IT", personnel_number="004711") == [ids[0]]
    first_page = listed(limit=2)
    assert first_page == [ids[3], ids[2]]
    assert listed(limit=2, before=first_page[-1]) == [ids[1], ids[0]]
    assert listed(limit=2, before=ids[0]) == []

    stored_at = dt.datetime.fromisoformat(stored[1]["stored_at"])
    assert listed(created_from=stored_at.isoformat()) == [ids[3], ids[2], ids[1]]
    assert listed(created_to=stored_at.isoformat()) == [ids[0]]
    next_stored_at = dt.datetime.fromisoformat(stored[2]["stored_at"])
    window = listed(
        created_from=stored_at.isoformat(), created_to=next_stored_at.isoformat()
    )
    assert window == [ids[1]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "open"}, "status"),
        (
            {
                "created_from": "2026-02-01T00:00:00+00:00",
                "created_to": "2026-01-01T00:00:00+00:00",
            },
            "created_from 2026-02-01T00:00:00+00:00 must be before created_to",
        ),
        (
            {"created_from": "2026-02-01T00:00:00"},
            "created_from 2026-02-01T00:00:00 has no UTC offset",
        ),
    ],
)
def test_invalid_list_filter_is_400(
    admin: Admin, tenant: TenantFixture, params: dict[str, str], message: str
) -> None:
    response = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets", params=params)

    assert response.status_code == 400
    assert message in response.text


async def test_ticket_cli_list_show_status(
    admin: Admin,
    tenant: TenantFixture,
    nc: Client,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`linkdesk ticket` lists, shows and changes tickets, as tables and JSON."""
    submitted = await publish_submission(nc, tenant.id)
    ticket = wait_for_ticket(admin, tenant.id, submitted.data.submission_id)
    monkeypatch.setenv("LINKDESK_TICKET_URL", stack.url("ticket"))
    monkeypatch.setenv("LINKDESK_ADMIN_TOKEN", ADMIN_TOKEN)
    capsys.readouterr()

    assert cli.main(["ticket", "list", tenant.id]) == 0
    table = capsys.readouterr().out
    assert ticket["number"] in table.splitlines()[1]
    assert table.splitlines()[0].split()[:3] == ["ID", "NUMBER", "STATUS"]

    assert cli.main(["ticket", "list", tenant.id, "--status", "new", "--json"]) == 0
    listed = msgspec.json.decode(capsys.readouterr().out)
    assert [item["id"] for item in listed] == [ticket["id"]]

    code = cli.main(
        [
            "ticket",
            "status",
            tenant.id,
            ticket["number"],
            "in_progress",
            "--comment",
            "ok",
        ]
    )
    assert code == 0
    assert "in_progress" in capsys.readouterr().out

    assert cli.main(["ticket", "show", tenant.id, str(ticket["id"]), "--json"]) == 0
    shown = msgspec.json.decode(capsys.readouterr().out)
    assert shown["ticket"]["status"] == "in_progress"
    assert [entry["comment"] for entry in shown["history"]] == ["", "ok"]

    assert cli.main(["ticket", "status", tenant.id, str(ticket["id"]), "closed"]) == 1
    error = capsys.readouterr().err
    assert "409" in error
    assert "from in_progress to closed" in error
