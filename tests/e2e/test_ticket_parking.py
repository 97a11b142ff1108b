"""Poison messages are parked after bounded deliveries; operators replay or discard."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import nats
import pytest
from nats.aio.client import Client

from linkdesk import cli
from linkdesk.processes import Stack
from services.ticket import replay
from shared import events, messages, subjects
from tests.conftest import ADMIN_TOKEN
from tests.helpers import Admin, TenantFixture, submitted_event

PARK_AFTER = 5
"""TICKET_PARK_AFTER_DELIVERIES of the session's ticket service (the default)."""


def submission(tenant_id: str, **fields: Any) -> events.TicketSubmitted:
    return submitted_event(
        tenant_id, **{"subject": "Heizung", "description": "Kalt", **fields}
    )


async def publish_raw(nc: Client, tenant_id: str, payload: bytes) -> int:
    """Publish bytes on a tenant's submission subject; return the stream sequence."""
    ack = await nc.jetstream().publish(
        subjects.ticket_submitted(tenant_id),
        payload,
        stream=subjects.TICKET_STREAM,
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )
    return int(ack.seq)


def parked_by_sequence(admin: Admin) -> dict[int, dict[str, Any]]:
    response = admin.tickets.get(
        "/admin/parked-messages", params={"limit": 500, "include_replayed": True}
    )
    assert response.status_code == 200, response.text
    return {row["stream_sequence"]: row for row in response.json()}


def wait_for_parked(
    admin: Admin, sequences: set[int], timeout: float = 30.0
) -> dict[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parked = parked_by_sequence(admin)
        if sequences <= parked.keys():
            return {sequence: parked[sequence] for sequence in sequences}
        time.sleep(0.2)
    missing = sequences - parked_by_sequence(admin).keys()
    pytest.fail(f"stream sequences {sorted(missing)} not parked within {timeout} s")


def wait_for_submissions(
    admin: Admin, tenant_id: str, submission_ids: set[str], timeout: float = 30.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tickets = admin.list_tickets(tenant_id)
        if submission_ids <= {ticket["submission_id"] for ticket in tickets}:
            return tickets
        time.sleep(0.2)
    pytest.fail(f"submissions {submission_ids} not stored within {timeout} s")


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def test_poison_messages_parked_good_ones_flow(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Five kinds of bad message are parked, and the good ones after them stored."""
    good_event = submission(tenant.id)
    # msgspec skips the unknown field but raises RecursionError, not
    # DecodeError, for its nesting.
    deep_field = messages.ENCODER.encode(submission(tenant.id)).replace(
        b"{", b'{"later":' + b"[" * 5000 + b"]" * 5000 + b",", 1
    )
    wrong_type = msgspec.json.decode(messages.ENCODER.encode(good_event))
    wrong_type["data"]["category"] = 42
    unknown_tenant = str(uuid.uuid4())
    poison = {
        "latin-1": await publish_raw(nc, tenant.id, b'{"subject":"K\xfcche"}'),
        "wrong type": await publish_raw(nc, tenant.id, msgspec.json.encode(wrong_type)),
        "truncated": await publish_raw(
            nc, tenant.id, messages.ENCODER.encode(good_event)[:60]
        ),
        "deep nesting": await publish_raw(nc, tenant.id, deep_field),
        "unknown tenant": await publish_raw(
            nc,
            unknown_tenant,
            messages.ENCODER.encode(submission(unknown_tenant)),
        ),
    }
    good = [submission(tenant.id, subject=f"gut {n}") for n in range(3)]
    for event in good:
        await publish_raw(nc, tenant.id, messages.ENCODER.encode(event))

    tickets = wait_for_submissions(
        admin, tenant.id, {event.data.submission_id for event in good}
    )
    parked = wait_for_parked(admin, set(poison.values()))

    assert len(tickets) == 3
    latin, typed, cut, deep, unknown = (parked[poison[name]] for name in poison)
    assert latin["deliveries"] == 1
    assert latin["error"].startswith("undecodable message")
    assert typed["deliveries"] == 1
    assert "$.data.category" in typed["error"]
    assert cut["deliveries"] == 1
    assert cut["error"].startswith("undecodable message")
    assert deep["deliveries"] == 1
    assert deep["error"].startswith("undecodable message")
    assert "too deeply" in deep["error"]
    assert unknown["deliveries"] == PARK_AFTER
    assert f"unknown tenant {unknown_tenant}" in unknown["error"]
    assert unknown["subject"] == subjects.ticket_submitted(unknown_tenant)
    shown = admin.tickets.get(f"/admin/parked-messages/{latin['id']}")
    assert shown.json()["data_text"] is None
    assert shown.json()["data_base64"] == "eyJzdWJqZWN0IjoiS/xjaGUifQ=="


async def test_unstorable_values_parked_good_ones_flow(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Values the database can never store are parked, not redelivered for ever."""
    nul = submission(tenant.id, subject="Null\x00Byte")
    ancient = msgspec.json.decode(messages.ENCODER.encode(submission(tenant.id)))
    ancient["data"]["submitted_at"] = "0001-01-01T00:00:00+01:00"
    poison = {
        "nul": await publish_raw(nc, tenant.id, messages.ENCODER.encode(nul)),
        "ancient": await publish_raw(nc, tenant.id, msgspec.json.encode(ancient)),
    }
    good = submission(tenant.id, subject="gut")
    await publish_raw(nc, tenant.id, messages.ENCODER.encode(good))

    tickets = wait_for_submissions(admin, tenant.id, {good.data.submission_id})
    parked = wait_for_parked(admin, set(poison.values()))

    assert len(tickets) == 1
    assert parked[poison["nul"]]["deliveries"] == 1
    assert "unstorable values" in parked[poison["nul"]]["error"]
    assert parked[poison["ancient"]]["deliveries"] == 1
    assert "data.submitted_at" in parked[poison["ancient"]]["error"]


async def test_subject_of_other_tenant_parked(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """An event whose data names another tenant than its subject is parked at once."""
    other = admin.create_tenant()
    sequence = await publish_raw(
        nc, other["id"], messages.ENCODER.encode(submission(tenant.id))
    )

    parked = wait_for_parked(admin, {sequence})[sequence]

    assert parked["deliveries"] == 1
    assert f"data.tenant_id '{tenant.id}' does not match the subject" in parked["error"]
    assert admin.list_tickets(tenant.id) == []


async def wait_until_all_acknowledged(nc: Client, timeout: float = 30.0) -> None:
    """Wait until the ticket consumer has no message pending or unacknowledged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await nc.jetstream().consumer_info(
            subjects.TICKET_STREAM, subjects.TICKET_STORE_CONSUMER
        )
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"ticket consumer still has unacknowledged messages after {timeout} s")


async def test_one_batch_with_poison_and_repeat(
    running_stack: Stack, admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """Messages that wait while the service is stopped arrive in one batch:
    poison is parked at once, a repeat is acknowledged without a second
    ticket, and the good ones get consecutive numbers in stream order."""
    running_stack.services["ticket"].stop()
    good = [submission(tenant.id, subject=f"gut {n}") for n in range(3)]
    nul = submission(tenant.id, subject="Null\x00Byte")
    sequences = {
        "good 0": await publish_raw(nc, tenant.id, messages.ENCODER.encode(good[0])),
        "nul": await publish_raw(nc, tenant.id, messages.ENCODER.encode(nul)),
        "good 1": await publish_raw(nc, tenant.id, messages.ENCODER.encode(good[1])),
        # The same submission under another Nats-Msg-Id, as after the
        # stream's duplicate window.
        "repeat": await publish_raw(nc, tenant.id, messages.ENCODER.encode(good[0])),
        "truncated": await publish_raw(nc, tenant.id, b'{"id": 1'),
        "good 2": await publish_raw(nc, tenant.id, messages.ENCODER.encode(good[2])),
    }
    running_stack.start("ticket")

    tickets = wait_for_submissions(
        admin, tenant.id, {event.data.submission_id for event in good}
    )
    parked = wait_for_parked(admin, {sequences["nul"], sequences["truncated"]})
    await wait_until_all_acknowledged(nc)

    year = good[0].data.submitted_at.year
    numbers = {ticket["submission_id"]: ticket["number"] for ticket in tickets}
    assert len(tickets) == 3
    assert [numbers[event.data.submission_id] for event in good] == [
        f"{year}-000001",
        f"{year}-000002",
        f"{year}-000003",
    ]
    assert parked[sequences["nul"]]["deliveries"] == 1
    assert "unstorable values" in parked[sequences["nul"]]["error"]
    assert parked[sequences["truncated"]]["deliveries"] == 1
    assert sequences["repeat"] not in parked_by_sequence(admin)


async def _park_by_hand(database_url: str, tenant_id: str) -> tuple[int, str]:
    """Insert a valid submission as a parked message, as an earlier fault left it."""
    event = submission(tenant_id)
    connection = await asyncpg.connect(database_url)
    try:
        parked_id = await connection.fetchval(
            "INSERT INTO ticket.parked_messages"
            " (stream_sequence, subject, headers, data, error, deliveries)"
            " VALUES ($1, $2, $3::jsonb, $4, 'database was read-only', 5)"
            " RETURNING id",
            secrets.randbelow(10**14) + 10**14,
            subjects.ticket_submitted(tenant_id),
            msgspec.json.encode(
                {"Nats-Msg-Id": event.data.submission_id, "Linkdesk-Request-Id": "r-1"}
            ).decode(),
            messages.ENCODER.encode(event),
        )
    finally:
        await connection.close()
    return int(parked_id), event.data.submission_id


async def test_replay_stores_parked_submission_once(
    admin: Admin, tenant: TenantFixture, nc: Client, database_url: str
) -> None:
    """Replay republishes the bytes with a new message id, once."""
    parked_id, submission_id = await _park_by_hand(database_url, tenant.id)

    response = admin.tickets.post(f"/admin/parked-messages/{parked_id}/replay")

    assert response.status_code == 200, response.text
    replayed = response.json()
    assert replayed["replayed_by"] == "tests"
    assert replayed["replayed_at"] is not None
    [ticket] = wait_for_submissions(admin, tenant.id, {submission_id})
    assert ticket["submission_id"] == submission_id
    message = await nc.jetstream().get_msg(
        subjects.TICKET_STREAM, replayed["replay_sequence"]
    )
    assert message.headers is not None
    assert message.headers["Nats-Msg-Id"] == replay.replay_message_id(parked_id)
    assert message.headers[replay.REPLAY_OF_HEADER] == str(replayed["stream_sequence"])
    assert message.headers["Linkdesk-Request-Id"] == "r-1"

    again = admin.tickets.post(f"/admin/parked-messages/{parked_id}/replay")
    assert again.status_code == 409
    assert f"parked message {parked_id} was already replayed" in again.json()["detail"]
    listed = admin.tickets.get("/admin/parked-messages").json()
    assert parked_id not in [row["id"] for row in listed]


async def test_replayed_poison_parked_again(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    """A replay of a message that is still bad is parked under its new sequence."""
    sequence = await publish_raw(nc, tenant.id, b'{"id": 1')
    original = wait_for_parked(admin, {sequence})[sequence]

    replayed = admin.tickets.post(f"/admin/parked-messages/{original['id']}/replay")

    assert replayed.status_code == 200, replayed.text
    new_sequence = replayed.json()["replay_sequence"]
    assert new_sequence > sequence
    again = wait_for_parked(admin, {new_sequence})[new_sequence]
    assert again["id"] != original["id"]
    assert again["error"].startswith("undecodable message")


async def test_discard_deletes_parked_message(
    admin: Admin, tenant: TenantFixture, nc: Client
) -> None:
    sequence = await publish_raw(nc, tenant.id, b"not json")
    parked = wait_for_parked(admin, {sequence})[sequence]

    deleted = admin.tickets.delete(f"/admin/parked-messages/{parked['id']}")

    assert deleted.status_code == 204
    assert sequence not in parked_by_sequence(admin)
    shown = admin.tickets.get(f"/admin/parked-messages/{parked['id']}")
    assert shown.status_code == 404
    assert f"parked message {parked['id']} not found" in shown.json()["detail"]
    assert (
        admin.tickets.delete(f"/admin/parked-messages/{parked['id']}").status_code
        == 404
    )


async def test_parked_cli_list_replay_discard(
    admin: Admin,
    tenant: TenantFixture,
    nc: Client,
    stack: Stack,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`linkdesk parked list|replay|discard` call the admin API."""
    monkeypatch.setenv("LINKDESK_TICKET_URL", stack.url("ticket"))
    monkeypatch.setenv("LINKDESK_ADMIN_TOKEN", ADMIN_TOKEN)
    replayable, submission_id = await _park_by_hand(database_url, tenant.id)
    sequence = await publish_raw(nc, tenant.id, b"\xff\xfe")
    doomed = wait_for_parked(admin, {sequence})[sequence]["id"]
    capsys.readouterr()

    assert cli.main(["parked", "list", "--json", "--limit", "500"]) == 0
    listed = {row["id"] for row in msgspec.json.decode(capsys.readouterr().out)}
    assert {replayable, doomed} <= listed

    assert cli.main(["parked", "replay", str(replayable)]) == 0
    assert str(replayable) in capsys.readouterr().out
    wait_for_submissions(admin, tenant.id, {submission_id})

    assert cli.main(["parked", "discard", str(doomed)]) == 0
    assert capsys.readouterr().out.strip() == f"parked message {doomed} discarded"
    assert cli.main(["parked", "discard", str(doomed)]) == 1
    assert "404" in capsys.readouterr().err

    assert cli.main(["parked", "list", "--json", "--limit", "500"]) == 0
    remaining = {row["id"] for row in msgspec.json.decode(capsys.readouterr().out)}
    assert replayable not in remaining
    assert doomed not in remaining
