"""The gateway while a service, a responder or the stream is missing.

An outage must give "try again later" (503 with `Retry-After`), never the
invalid-link page, and a posted form must come back with what the user
typed. Every test that stops a service uses `running_stack`, which starts
it again afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from linkdesk.processes import Stack
from shared import directory_events, messages, subjects
from tests.helpers import (
    LINK_PATH,
    VALID_FIELDS,
    Admin,
    TenantFixture,
    form_token,
    open_link,
    post_form,
)

MAX_OUTAGE_RESPONSE_SECONDS = 10.0
"""Upper limit for the gateway's response during an outage. The fixture sets a
1 s timeout per NATS request and a link needs two, so this is generous slack,
not a benchmark."""

SLOW_REPLY_SECONDS = 3.0
"""Seconds the slow responder waits, longer than the 1 s request timeout."""

TYPED_FIELDS = {
    **VALID_FIELDS,
    "subject": "Heizung im Büro 3 bleibt kalt",
    "description": "Seit Montag früh zeigt das Thermostat 14 Grad an.",
}
"""Form values to find in a re-rendered form; no character in them is escaped
by HTML, so they appear verbatim."""


class GatewayLog:
    """The gateway's JSON log lines written after this object was created."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def records(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        records = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def wait_for(self, event: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Return the records of `event`, polling until one appears or `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if r.get("event") == event]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)


def gateway_log(stack: Stack) -> GatewayLog:
    return GatewayLog(stack.services["gateway"].log_path)


def assert_unavailable_page(page: httpx.Response, not_found_body: bytes) -> None:
    assert page.status_code == 503, page.text[:500]
    assert "retry-after" in page.headers
    assert int(page.headers["retry-after"]) > 0
    assert page.content != not_found_body
    assert "Service temporarily unavailable" in page.text
    assert "Traceback" not in page.text


def assert_form_kept(page: httpx.Response, fields: dict[str, str]) -> None:
    """Check a 503 re-rendered form: status, header and every typed value."""
    assert page.status_code == 503, page.text[:500]
    assert "location" not in page.headers
    assert "retry-after" in page.headers
    assert 'name="form_token"' in page.text
    assert fields["subject"] in page.text
    assert fields["description"] in page.text
    assert fields["location"] in page.text
    assert "Traceback" not in page.text


@pytest.fixture
def not_found_body(gateway: httpx.Client) -> bytes:
    """The invalid-link page's body, fetched with a malformed link so that no
    service needs to run."""
    page = gateway.get(f"{LINK_PATH}?not-a-link")
    assert page.status_code == 404
    return page.content


@pytest.fixture
async def async_gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway client that lets the test's own NATS handlers run meanwhile."""
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), follow_redirects=False, timeout=30.0
    ) as client:
        yield client


async def count_stored_tickets(database_url: str, tenant_id: str) -> int:
    """Count the tenant's rows in PostgreSQL, bypassing the ticket service."""
    connection = await asyncpg.connect(database_url)
    try:
        count = await connection.fetchval(
            "SELECT count(*) FROM ticket.tickets WHERE tenant_id = $1::uuid",
            tenant_id,
        )
    finally:
        await connection.close()
    return int(count)


@asynccontextmanager
async def personnel_responder(
    nats_url: str, handle: Callable[[Msg], Awaitable[None]]
) -> AsyncIterator[list[Msg]]:
    """Serve `PERSONNEL_RESOLVE` with `handle` and yield the received requests."""
    received: list[Msg] = []

    async def callback(msg: Msg) -> None:
        received.append(msg)
        await handle(msg)

    nc = await nats.connect(nats_url, name="linkdesk-test-responder")
    try:
        subscription = await nc.subscribe(
            subjects.PERSONNEL_RESOLVE, queue=subjects.QUEUE_GROUP, cb=callback
        )
        try:
            await nc.flush()
            yield received
        finally:
            await subscription.unsubscribe()
    finally:
        await nc.close()


async def test_ticket_service_down_submission_stored_later(
    running_stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    database_url: str,
) -> None:
    """JetStream keeps a submission until the stopped ticket service returns."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200

    running_stack.services["ticket"].stop()
    answer = post_form(gateway, form_token(page))
    assert answer.status_code == 303, answer.text[:500]
    assert "location" in answer.headers
    assert await count_stored_tickets(database_url, tenant.id) == 0

    running_stack.start("ticket")
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == VALID_FIELDS["subject"]
    assert await count_stored_tickets(database_url, tenant.id) == 1


def test_personnel_down_link_returns_503(
    running_stack: Stack,
    gateway: httpx.Client,
    tenant: TenantFixture,
    not_found_body: bytes,
) -> None:
    """A valid link returns 503, not the invalid-link page, without personnel."""
    log = gateway_log(running_stack)
    running_stack.services["personnel"].stop()

    started = time.monotonic()
    page = open_link(gateway, tenant.link_query())
    elapsed = time.monotonic() - started

    assert_unavailable_page(page, not_found_body)
    assert elapsed < MAX_OUTAGE_RESPONSE_SECONDS

    [record, *_] = log.wait_for("dependency_unavailable")
    assert subjects.PERSONNEL_RESOLVE in record["message"]
    assert "no_responders" in record["message"]
    assert not log.wait_for("link_rejected", timeout=0)

    running_stack.start("personnel")
    assert open_link(gateway, tenant.link_query()).status_code == 200


def test_personnel_down_cached_form_accepted(
    running_stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
) -> None:
    """A form opened before the outage is checked from the gateway's cache."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    running_stack.services["personnel"].stop()

    answer = post_form(gateway, form_token(page), TYPED_FIELDS)

    assert answer.status_code == 303, answer.text[:500]
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == TYPED_FIELDS["subject"]


async def drop_cached_person(
    gateway: httpx.Client, tenant: TenantFixture, nats_url: str
) -> None:
    """Send the event that the personnel service sends after the tenant's
    person changed, and wait until the gateway has dropped that person's
    cached lookup. Their link then needs the (stopped) personnel service."""
    nc = await nats.connect(nats_url)
    try:
        await directory_events.publish(
            nc,
            directory_events.PersonChanged(
                tenant_id=tenant.id,
                change="updated",
                personnel_number=tenant.personnel_number,
                changed_at=directory_events.now(),
            ),
        )
    finally:
        await nc.close()
    deadline = time.monotonic() + 5
    while open_link(gateway, tenant.link_query()).status_code != 503:
        assert time.monotonic() < deadline, "the gateway kept the cached person"
        await asyncio.sleep(0.05)


async def test_personnel_down_post_keeps_typed_values(
    running_stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    nats_url: str,
) -> None:
    """A form posted while personnel is down and the gateway has not cached
    its person comes back 503 with its values."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    running_stack.services["personnel"].stop()
    await drop_cached_person(gateway, tenant, nats_url)
    log = gateway_log(running_stack)

    started = time.monotonic()
    answer = post_form(gateway, form_token(page), TYPED_FIELDS)
    elapsed = time.monotonic() - started

    assert_form_kept(answer, TYPED_FIELDS)
    assert elapsed < MAX_OUTAGE_RESPONSE_SECONDS
    assert log.wait_for("dependency_unavailable")
    assert not log.wait_for("submission_accepted", timeout=0)

    # The form of the 503 page is still good once the service is back.
    running_stack.start("personnel")
    retried = post_form(gateway, form_token(answer), TYPED_FIELDS)
    assert retried.status_code == 303, retried.text[:500]
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == TYPED_FIELDS["subject"]
    assert ticket["description"] == TYPED_FIELDS["description"]


def test_tenant_down_link_returns_503(
    running_stack: Stack,
    gateway: httpx.Client,
    tenant: TenantFixture,
    not_found_body: bytes,
) -> None:
    """A valid link returns 503, not the invalid-link page, without tenant."""
    log = gateway_log(running_stack)
    running_stack.services["tenant"].stop()

    started = time.monotonic()
    page = open_link(gateway, tenant.link_query())
    elapsed = time.monotonic() - started

    assert_unavailable_page(page, not_found_body)
    assert elapsed < MAX_OUTAGE_RESPONSE_SECONDS

    [record, *_] = log.wait_for("dependency_unavailable")
    assert subjects.TENANT_RESOLVE_SECRET in record["message"]
    assert "no_responders" in record["message"]
    assert not log.wait_for("link_rejected", timeout=0)

    running_stack.start("tenant")
    assert open_link(gateway, tenant.link_query()).status_code == 200


async def test_slow_personnel_reply_returns_503(
    running_stack: Stack,
    async_gateway: httpx.AsyncClient,
    tenant: TenantFixture,
    not_found_body: bytes,
    nats_url: str,
) -> None:
    """A personnel reply later than the request timeout gives 503, not 404."""

    async def reply_late(msg: Msg) -> None:
        await asyncio.sleep(SLOW_REPLY_SECONDS)
        # Had the gateway waited for this, it would show the invalid-link page.
        late = messages.PersonResolved(person=None, reason="unknown_person")
        await msg.respond(messages.ENCODER.encode(late))

    log = gateway_log(running_stack)
    running_stack.services["personnel"].stop()
    async with personnel_responder(nats_url, reply_late) as received:
        started = time.monotonic()
        page = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
        elapsed = time.monotonic() - started

        assert len(received) == 1
        assert_unavailable_page(page, not_found_body)
        assert elapsed < MAX_OUTAGE_RESPONSE_SECONDS

    [record, *_] = log.wait_for("dependency_unavailable")
    assert subjects.PERSONNEL_RESOLVE in record["message"]
    assert "timeout" in record["message"]
    assert not log.wait_for("link_rejected", timeout=0)

    running_stack.start("personnel")
    reopened = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
    assert reopened.status_code == 200


INVALID_REPLIES = {
    "not UTF-8": b"\xff\x00garbage",
    "wrong type": b'{"person": 42, "reason": "garbage"}',
    # msgspec skips the unknown field but raises RecursionError, not
    # DecodeError, for its nesting.
    "deep unknown field": b'{"later": '
    + b"[" * 5000
    + b"]" * 5000
    + b', "person": null, "reason": "garbage"}',
}
"""Personnel replies that are not a valid `PersonResolved`. Each contains the
word "garbage", which must not reach the page."""


@pytest.mark.parametrize("reply", INVALID_REPLIES.values(), ids=INVALID_REPLIES)
async def test_invalid_personnel_reply_returns_5xx(
    running_stack: Stack,
    async_gateway: httpx.AsyncClient,
    tenant: TenantFixture,
    not_found_body: bytes,
    nats_url: str,
    reply: bytes,
) -> None:
    """A reply that is not a valid message gives 502 or 503 and no traceback."""

    async def reply_garbage(msg: Msg) -> None:
        await msg.respond(reply)

    log = gateway_log(running_stack)
    running_stack.services["personnel"].stop()
    async with personnel_responder(nats_url, reply_garbage) as received:
        page = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")

        assert len(received) == 1
        assert page.status_code in (502, 503), page.text[:500]
        assert page.content != not_found_body
        assert "Traceback" not in page.text
        assert "garbage" not in page.text

        # A second request gets the same status, so the gateway cached nothing.
        again = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
        assert again.status_code == page.status_code
        assert len(received) == 2

    records = log.wait_for("dependency_unavailable")
    assert len(records) == 2
    assert all("bad_reply" in record["message"] for record in records)
    assert not log.wait_for("link_rejected", timeout=0)

    running_stack.start("personnel")
    reopened = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
    assert reopened.status_code == 200
    assert "Jörg Bäcker" in reopened.text


async def test_missing_stream_returns_503_then_stores(
    running_stack: Stack,
    async_gateway: httpx.AsyncClient,
    admin: Admin,
    tenant: TenantFixture,
    database_url: str,
    nats_url: str,
) -> None:
    """Without the TICKETS stream nothing is confirmed, and a retry stores once."""
    page = await async_gateway.get(f"{LINK_PATH}?{tenant.link_query()}")
    assert page.status_code == 200
    log = gateway_log(running_stack)

    nc = await nats.connect(nats_url, name="linkdesk-test-stream")
    stream_restored = False
    try:
        js = nc.jetstream()
        assert await js.delete_stream(subjects.TICKET_STREAM)

        answer = await async_gateway.post(
            "/public/tickets",
            data={"form_token": form_token(page), **TYPED_FIELDS},
        )
        assert_form_kept(answer, TYPED_FIELDS)
        assert not log.wait_for("submission_accepted", timeout=0)
        [record] = log.wait_for("publish_failed")
        assert record["reason"] == "no_stream"

        # The ticket service creates the stream and its consumer at start.
        running_stack.services["ticket"].stop()
        running_stack.start("ticket")
        stream_restored = True
        info = await js.stream_info(subjects.TICKET_STREAM)
        assert info.config.name == subjects.TICKET_STREAM
    finally:
        if not stream_restored:
            await _restore_stream(running_stack, js)
        await nc.close()

    retried = await async_gateway.post(
        "/public/tickets",
        data={"form_token": form_token(answer), **TYPED_FIELDS},
    )
    assert retried.status_code == 303, retried.text[:500]
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == TYPED_FIELDS["subject"]
    assert await count_stored_tickets(database_url, tenant.id) == 1


async def _restore_stream(stack: Stack, js: JetStreamContext) -> None:
    """Restart the ticket service if the stream is still missing."""
    try:
        await js.stream_info(subjects.TICKET_STREAM)
    except NotFoundError:
        stack.services["ticket"].stop()
        stack.start("ticket")
