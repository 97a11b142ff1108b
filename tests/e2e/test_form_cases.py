"""Posted form bodies through HTTP, JetStream and PostgreSQL.

Each test reads both the stored ticket (admin API) and the event on the
TICKETS stream, because a value can be mangled on either side. "Nothing was
stored" is checked against the stream: the gateway responds to a valid post
only after JetStream stored the event, so a rejected post has no event for
its tenant, and the ticket service stores nothing that is not on the stream.
"""

from __future__ import annotations

import concurrent.futures
import html
import json
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from linkdesk.processes import Stack
from services.gateway import i18n
from shared import subjects
from tests.helpers import (
    Admin,
    TenantFixture,
    form_token,
    open_link,
    wait_until_consumed,
)

STREAM = subjects.TICKET_STREAM
CONSUMER = subjects.TICKET_STORE_CONSUMER
MAX_BODY_BYTES = 262_144
"""The gateway's default `GATEWAY_MAX_BODY_BYTES`, which the test stack keeps."""
MAX_BODY_TEXT = "256 KB"
FORM_CONTENT_TYPE = {"Content-Type": "application/x-www-form-urlencoded"}

# `{"a":1}` percent-encoded, as a browser sends it.
EXACT_STRINGS_BODY = (
    b"subject=4711&location=2.50&description=%7B%22a%22%3A1%7D&category=null"
)


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield nc.jetstream(timeout=5.0)
    finally:
        await nc.close()


def create_tenant(admin: Admin, categories: list[str]) -> TenantFixture:
    """Create a tenant with intake on, these categories and person `004711`."""
    tenant = admin.create_tenant(categories=categories)
    issued = admin.issue_secret(tenant["id"])
    admin.add_person(tenant["id"], "004711", "Jörg Bäcker")
    return TenantFixture(
        id=tenant["id"],
        secret=issued["secret"],
        secret_id=issued["info"]["id"],
        personnel_number="004711",
    )


def open_form(gateway: httpx.Client, tenant: TenantFixture) -> str:
    """Open the tenant's link and return the form token of the page."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200, page.text[:300]
    return form_token(page)


def post_body(gateway: httpx.Client, token: str, fields: bytes) -> httpx.Response:
    """Post `form_token=<token>&` + `fields`, with the field bytes sent as is."""
    # The token is URL-safe base64 and a dot, so it needs no encoding.
    body = b"form_token=" + token.encode("ascii") + b"&" + fields
    return gateway.post("/public/tickets", content=body, headers=FORM_CONTENT_TYPE)


def subject_of(tenant: TenantFixture) -> str:
    return subjects.ticket_submitted(tenant.id)


async def last_event(
    js: JetStreamContext, tenant: TenantFixture
) -> RawStreamMsg | None:
    try:
        return await js.get_last_msg(STREAM, subject_of(tenant))
    except nats.js.errors.NotFoundError:
        return None


async def event_data(js: JetStreamContext, tenant: TenantFixture) -> dict[str, Any]:
    """Return the `data` object of the tenant's last submitted event."""
    event = await last_event(js, tenant)
    assert event is not None, f"no event on {subject_of(tenant)}"
    assert event.data is not None
    data = json.loads(event.data)["data"]
    assert isinstance(data, dict)
    return data


async def events_on_subject(js: JetStreamContext, tenant: TenantFixture) -> int:
    info = await js.stream_info(STREAM, subjects_filter=subject_of(tenant))
    return (info.state.subjects or {}).get(subject_of(tenant), 0)


async def assert_nothing_stored(
    admin: Admin, js: JetStreamContext, tenant: TenantFixture
) -> None:
    assert await last_event(js, tenant) is None
    await wait_until_consumed(js)
    assert admin.list_tickets(tenant.id) == []


def field_errors(page: str) -> set[str]:
    """Return the names of the fields that carry an error message."""
    return {
        name
        for name in ("category", "subject", "description", "location", "urgency")
        if f'id="{name}-error"' in page
    }


# Values stay the strings that were typed


async def test_exact_strings_stored_and_published(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT", "null"])
    answer = post_body(gateway, open_form(gateway, tenant), EXACT_STRINGS_BODY)
    assert answer.status_code == 303, answer.text[:500]

    data = await event_data(jetstream, tenant)
    assert data["subject"] == "4711"
    assert data["location"] == "2.50"
    assert data["description"] == '{"a":1}'
    assert data["category"] == "null"
    assert data["personnel_number"] == "004711"

    event = await last_event(jetstream, tenant)
    assert event is not None
    assert event.data is not None
    assert b'"subject":"4711"' in event.data
    assert b'"location":"2.50"' in event.data
    assert b'"description":"{\\"a\\":1}"' in event.data
    assert b'"category":"null"' in event.data

    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == "4711"
    assert ticket["location"] == "2.50"
    assert ticket["description"] == '{"a":1}'
    assert ticket["category"] == "null"
    assert ticket["personnel_number"] == "004711"

    raw_output = admin.tickets.get(f"/admin/tenants/{tenant.id}/tickets")
    assert b'"subject":"4711"' in raw_output.content
    assert b'"location":"2.50"' in raw_output.content
    assert b'"category":"null"' in raw_output.content


async def test_null_category_rejected_when_unknown(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT", "Gebäude"])
    answer = post_body(gateway, open_form(gateway, tenant), EXACT_STRINGS_BODY)

    assert answer.status_code == 400
    assert field_errors(answer.text) == {"category"}
    page = html.unescape(answer.text)
    assert i18n.texts("de")["error_unknown_category"] in page
    # The typed values come back unchanged for the next try.
    assert 'value="4711"' in page
    assert 'value="2.50"' in page
    assert '{"a":1}</textarea>' in page
    # A new token for the same form, so that the retry stays one ticket.
    assert form_token(answer)

    await assert_nothing_stored(admin, jetstream, tenant)


# Encodings


async def test_utf8_round_trips_byte_for_byte(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    fields = (
        b"category=IT&subject=Stra%C3%9Fe+%E2%82%AC+%F0%9F%98%80"
        b"&description=Cafe%CC%81+%E2%80%93+%E5%8D%B0%E5%88%B7%E6%A9%9F"
        b"&location=Z%C3%BCrich"
    )
    answer = post_body(gateway, open_form(gateway, tenant), fields)
    assert answer.status_code == 303, answer.text[:500]

    expected_subject = b"Stra\xc3\x9fe \xe2\x82\xac \xf0\x9f\x98\x80"
    # `e` and a combining accent stay two code points: nothing normalises.
    expected_description = (
        b"Cafe\xcc\x81 \xe2\x80\x93 \xe5\x8d\xb0\xe5\x88\xb7\xe6\xa9\x9f"
    )

    event = await last_event(jetstream, tenant)
    assert event is not None
    assert event.data is not None
    assert b'"subject":"' + expected_subject + b'"' in event.data
    data = json.loads(event.data)["data"]
    assert data["subject"].encode("utf-8") == expected_subject
    assert data["description"].encode("utf-8") == expected_description
    assert data["location"] == "Zürich"

    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == "Straße € 😀"
    assert ticket["subject"].encode("utf-8") == expected_subject
    assert ticket["description"].encode("utf-8") == expected_description
    assert ticket["location"] == "Zürich"


@pytest.mark.parametrize(
    ("fields", "invalid_field"),
    [
        pytest.param(
            b"category=IT&subject=J%F6rg&description=Kein+Papier&location=B+204",
            "subject",
            id="latin1-escape-in-subject",
        ),
        pytest.param(
            b"category=IT&subject=J\xf6rg&description=Kein+Papier&location=B+204",
            "subject",
            id="raw-latin1-in-subject",
        ),
        pytest.param(
            b"category=IT&subject=Drucker&description=Kein+Papier\xc3&location=B+204",
            "description",
            id="truncated-utf8-in-description",
        ),
        pytest.param(
            b"category=IT&subject=Drucker&description=Kein+Papier&location=B%ED%A0%80",
            "location",
            id="surrogate-in-location",
        ),
    ],
)
async def test_invalid_utf8_gets_field_error(
    gateway: httpx.Client,
    admin: Admin,
    jetstream: JetStreamContext,
    fields: bytes,
    invalid_field: str,
) -> None:
    tenant = create_tenant(admin, ["IT"])
    answer = post_body(gateway, open_form(gateway, tenant), fields)

    assert answer.status_code == 400
    assert field_errors(answer.text) == {invalid_field}
    page = html.unescape(answer.text)
    assert i18n.texts("de")["error_invalid_encoding"] in page
    # The unreadable value is asked for again, not shown with U+FFFD in it.
    assert "\ufffd" not in page
    typed = {
        "subject": 'value="Drucker"',
        "description": "Kein Papier</textarea>",
        "location": 'value="B 204"',
    }
    for name, markup in typed.items():
        if name != invalid_field:
            assert markup in page, name
    assert '<option value="IT" selected>' in page

    await assert_nothing_stored(admin, jetstream, tenant)


@pytest.mark.parametrize(
    ("fields", "invalid_field"),
    [
        pytest.param(
            b"category=IT&subject=Null%00Byte&description=Kein+Papier",
            "subject",
            id="nul-in-subject",
        ),
        pytest.param(
            b"category=IT&subject=Drucker&description=Kein%1BPapier",
            "description",
            id="escape-in-description",
        ),
    ],
)
async def test_control_character_gets_field_error(
    gateway: httpx.Client,
    admin: Admin,
    jetstream: JetStreamContext,
    fields: bytes,
    invalid_field: str,
) -> None:
    """A control character is refused before it is confirmed, because the
    database cannot store U+0000 and a confirmed ticket must be stored."""
    tenant = create_tenant(admin, ["IT"])
    answer = post_body(gateway, open_form(gateway, tenant), fields)

    assert answer.status_code == 400
    assert field_errors(answer.text) == {invalid_field}
    page = html.unescape(answer.text)
    assert i18n.texts("de")["error_control_character"] in page
    await assert_nothing_stored(admin, jetstream, tenant)


async def test_line_breaks_and_tabs_are_kept(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    fields = b"category=IT&subject=Drucker&description=Zeile+1%0D%0A%09Zeile+2"
    answer = post_body(gateway, open_form(gateway, tenant), fields)

    assert answer.status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["description"] == "Zeile 1\r\n\tZeile 2"


# Double submits


async def test_same_form_posted_again_is_one_ticket(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    fields = b"category=IT&subject=Doppelklick&description=Zweimal+gesendet"

    # A double click: the same form twice in a row.
    first = post_body(gateway, token, fields)
    second = post_body(gateway, token, fields)
    assert first.status_code == 303
    assert second.status_code == 303
    location = first.headers["location"]
    assert second.headers["location"] == location

    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert location.startswith(f"/public/tickets/{ticket['reference']}?")

    # A reload of the response page after the ticket was stored.
    reloaded = post_body(gateway, token, fields)
    assert reloaded.status_code == 303
    assert reloaded.headers["location"] == location

    await wait_until_consumed(jetstream)
    assert len(admin.list_tickets(tenant.id)) == 1
    assert await events_on_subject(jetstream, tenant) == 1


async def test_concurrent_posts_are_one_ticket(
    running_stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    jetstream: JetStreamContext,
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    fields = b"category=IT&subject=Zwei+Tabs&description=Gleichzeitig+gesendet"
    both_ready = threading.Barrier(2, timeout=10)

    def post_from_tab() -> httpx.Response:
        with httpx.Client(base_url=running_stack.url("gateway"), timeout=10) as tab:
            both_ready.wait()
            body = b"form_token=" + token.encode("ascii") + b"&" + fields
            return tab.post("/public/tickets", content=body, headers=FORM_CONTENT_TYPE)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(post_from_tab) for _ in range(2)]
        answers = [future.result(timeout=30) for future in futures]

    assert [answer.status_code for answer in answers] == [303, 303]
    locations = {answer.headers["location"] for answer in answers}
    assert len(locations) == 1

    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert locations.pop().startswith(f"/public/tickets/{ticket['reference']}?")
    await wait_until_consumed(jetstream)
    assert len(admin.list_tickets(tenant.id)) == 1
    assert await events_on_subject(jetstream, tenant) == 1


async def test_database_key_drops_republished_event(
    stack: Stack, gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    answer = post_body(gateway, token, b"category=IT&subject=Einmal&description=Text")
    assert answer.status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)

    original = await last_event(jetstream, tenant)
    assert original is not None
    assert original.data is not None

    # The same event bytes under a new Nats-Msg-Id pass JetStream's duplicate
    # check, as they would after the duplicate window has passed.
    ack = await jetstream.publish(
        subject_of(tenant),
        original.data,
        stream=STREAM,
        headers={"Nats-Msg-Id": str(uuid.uuid4())},
    )
    assert not ack.duplicate
    assert ack.seq > (original.seq or 0)

    await wait_until_consumed(jetstream, ack.seq)
    tickets = admin.list_tickets(tenant.id)
    assert len(tickets) == 1
    assert tickets[0]["id"] == ticket["id"]
    assert await events_on_subject(jetstream, tenant) == 2

    parked = admin.tickets.get("/admin/parked-messages", params={"limit": 500})
    assert parked.status_code == 200
    assert ack.seq not in {message["stream_sequence"] for message in parked.json()}
    logged = [
        json.loads(line)
        for line in stack.services["ticket"].log_path.read_text().splitlines()
        if f'"stream_seq": {ack.seq}' in line or f'"stream_seq":{ack.seq}' in line
    ]
    assert [record["event"] for record in logged] == ["ticket_duplicate"]
    assert logged[0]["submission_id"] == ticket["submission_id"]


# Size limits


def assert_too_large_page(answer: httpx.Response) -> None:
    assert answer.status_code == 413
    page = html.unescape(answer.text)
    expected = i18n.texts("de")["request_too_large_message"].format(limit=MAX_BODY_TEXT)
    assert expected in page
    assert answer.headers.get("cache-control") == "no-store"


async def test_body_over_limit_gets_413(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    for size in (MAX_BODY_BYTES + 1, 5 * 1024 * 1024):
        description = b"x" * size
        fields = b"category=IT&subject=Gross&description=" + description
        answer = post_body(gateway, token, fields)
        assert_too_large_page(answer)

    await assert_nothing_stored(admin, jetstream, tenant)


async def test_body_at_limit_is_read(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    # A body of exactly the limit is read. Its description is too long, so the
    # field check rejects it, not the size check.
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    prefix = b"form_token=" + token.encode("ascii") + b"&"
    fields = b"category=IT&subject=Grenze&description="
    padding = MAX_BODY_BYTES - len(prefix) - len(fields)
    answer = post_body(gateway, token, fields + b"x" * padding)

    assert answer.status_code == 400
    assert field_errors(answer.text) == {"description"}
    await assert_nothing_stored(admin, jetstream, tenant)


@pytest.mark.parametrize("extra_fields", [15, 2_000])
async def test_too_many_fields_get_413(
    gateway: httpx.Client,
    admin: Admin,
    jetstream: JetStreamContext,
    extra_fields: int,
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    # The token and these five fields are 6 fields, and the extras bring the
    # count to 21 or more.
    fields = b"category=IT&subject=Viele&description=Felder&location=&urgency=normal"
    fields += b"".join(b"&extra%d=1" % index for index in range(extra_fields))
    answer = post_body(gateway, token, fields)

    assert answer.status_code == 413
    expected = i18n.texts("de")["too_many_fields_message"].format(max=20)
    assert expected in html.unescape(answer.text)
    assert answer.headers.get("cache-control") == "no-store"
    await assert_nothing_stored(admin, jetstream, tenant)


async def test_twenty_fields_accepted(
    gateway: httpx.Client, admin: Admin, jetstream: JetStreamContext
) -> None:
    tenant = create_tenant(admin, ["IT"])
    token = open_form(gateway, tenant)
    fields = b"category=IT&subject=Zwanzig&description=Felder&location=&urgency=normal"
    fields += b"".join(b"&extra%d=1" % index for index in range(14))
    answer = post_body(gateway, token, fields)

    assert answer.status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == "Zwanzig"
