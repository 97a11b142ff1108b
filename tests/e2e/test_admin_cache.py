"""Change events and the gateway's lookup cache.

The session's gateway runs with the default cache TTL of 30 s, so the
gateway serves a link that was opened once from its cache. Each admin change must
still reach the gateway within one second through its change event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client.parser import text_string_to_metric_families

from linkdesk.processes import Stack
from services.gateway.directory import Directory, Reporter
from services.gateway.lookup_cache import LookupCache
from shared import directory_events, messages, messaging, subjects
from shared.embedded import EmbeddedNats
from tests.helpers import Admin, TenantFixture, open_link

INVALIDATION_BOUND = 1.0
"""Seconds within which an admin change must reach the gateway."""

EVENT_TIMEOUT = 2.0
"""Seconds to wait for one expected change event."""


def page_within(
    gateway: httpx.Client,
    query: str,
    done: Callable[[httpx.Response], bool],
    bound: float = INVALIDATION_BOUND,
) -> httpx.Response:
    """Open the link until `done(page)` is true or `bound` seconds pass;
    return the last page."""
    deadline = time.monotonic() + bound
    page = open_link(gateway, query)
    while not done(page) and time.monotonic() < deadline:
        time.sleep(0.02)
        page = open_link(gateway, query)
    return page


async def set_name_behind_service(
    database_url: str, tenant_id: str, number: str, name: str
) -> None:
    """Change a name in PostgreSQL directly, so that no event is published."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE personnel.people SET name = $3"
            " WHERE tenant_id = $1::uuid AND personnel_number = $2",
            tenant_id,
            number,
            name,
        )
    finally:
        await connection.close()


async def set_tenant_name_behind_service(
    database_url: str, tenant_id: str, name: str
) -> None:
    """Change a tenant's name in PostgreSQL directly, so that no event is
    published."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE tenant.tenants SET name = $2 WHERE id = $1::uuid", tenant_id, name
        )
    finally:
        await connection.close()


def lookups_handled(stack: Stack, service: str, subject: str) -> float:
    """Return how many requests on `subject` the service has handled, by any
    outcome, from its `/metrics`."""
    response = httpx.get(f"{stack.url(service)}/metrics", timeout=10.0)
    assert response.status_code == 200, response.text[:500]
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "linkdesk_nats_requests_handled_total"
        and sample.labels.get("subject") == subject
    )


# The gateway of the running stack


async def test_cache_serves_until_event(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture, database_url: str
) -> None:
    first = open_link(gateway, tenant.link_query())
    assert "Jörg Bäcker" in first.text

    await set_name_behind_service(database_url, tenant.id, "004711", "Ohne Ereignis")
    cached = open_link(gateway, tenant.link_query())
    assert cached.status_code == 200
    assert "Jörg Bäcker" in cached.text, "the gateway cache must be on for this test"

    admin.update_person(tenant.id, "004711", name="Jörg Neu")
    page = page_within(gateway, tenant.link_query(), lambda p: "Jörg Neu" in p.text)
    assert "Jörg Neu" in page.text


def test_revoked_secret_stops_within_second(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    assert open_link(gateway, tenant.link_query()).status_code == 200
    admin.revoke_secret(tenant.id, tenant.secret_id)
    page = page_within(gateway, tenant.link_query(), lambda p: p.status_code == 404)
    assert page.status_code == 404


def test_disabled_intake_stops_within_second(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    assert open_link(gateway, tenant.link_query()).status_code == 200
    admin.update_tenant(tenant.id, intake_enabled=False)
    page = page_within(gateway, tenant.link_query(), lambda p: p.status_code == 404)
    assert page.status_code == 404


def test_deactivated_person_stops_within_second(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    admin.add_person(tenant.id, "004712", "Anna Muster")
    assert open_link(gateway, tenant.link_query()).status_code == 200
    assert open_link(gateway, tenant.link_query("004712")).status_code == 200

    admin.update_person(tenant.id, "004711", active=False)
    page = page_within(gateway, tenant.link_query(), lambda p: p.status_code == 404)
    assert page.status_code == 404
    assert open_link(gateway, tenant.link_query("004712")).status_code == 200


async def test_person_edit_keeps_others_cached(
    stack: Stack,
    admin: Admin,
    gateway: httpx.Client,
    tenant: TenantFixture,
    database_url: str,
) -> None:
    admin.add_person(tenant.id, "004712", "Anna Muster")
    assert "Jörg Bäcker" in open_link(gateway, tenant.link_query()).text
    assert "Anna Muster" in open_link(gateway, tenant.link_query("004712")).text
    # Only a lookup cached before the edit below still shows the old name.
    await set_name_behind_service(database_url, tenant.id, "004712", "Anna Neu")

    admin.update_person(tenant.id, "004711", name="Jörg Neu")
    page = page_within(gateway, tenant.link_query(), lambda p: "Jörg Neu" in p.text)
    assert "Jörg Neu" in page.text

    before = lookups_handled(stack, "personnel", subjects.PERSONNEL_RESOLVE)
    other = open_link(gateway, tenant.link_query("004712"))
    after = lookups_handled(stack, "personnel", subjects.PERSONNEL_RESOLVE)
    assert other.status_code == 200
    assert "Anna Muster" in other.text
    assert after == before


async def test_import_keeps_tenant_cached(
    stack: Stack,
    admin: Admin,
    gateway: httpx.Client,
    tenant: TenantFixture,
    database_url: str,
) -> None:
    first = open_link(gateway, tenant.link_query())
    assert first.status_code == 200
    tenant_name = admin.tenants.get(f"/admin/tenants/{tenant.id}").json()["name"]
    assert tenant_name in first.text
    await set_tenant_name_behind_service(database_url, tenant.id, "Ohne Ereignis")

    imported = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people/import",
        content="Personalnummer;Name\n004711;Jörg Importiert\n".encode(),
    )
    assert imported.status_code == 200, imported.text
    assert imported.json()["counts"]["updated"] == 1

    before = lookups_handled(stack, "tenant", subjects.TENANT_RESOLVE_SECRET)
    page = page_within(
        gateway, tenant.link_query(), lambda p: "Jörg Importiert" in p.text
    )
    after = lookups_handled(stack, "tenant", subjects.TENANT_RESOLVE_SECRET)
    assert "Jörg Importiert" in page.text
    assert tenant_name in page.text
    assert "Ohne Ereignis" not in page.text
    assert after == before


def test_reactivated_person_opens_again(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    admin.update_person(tenant.id, "004711", active=False)
    assert open_link(gateway, tenant.link_query()).status_code == 404
    admin.update_person(tenant.id, "004711", active=True)
    page = page_within(gateway, tenant.link_query(), lambda p: p.status_code == 200)
    assert page.status_code == 200


def test_unknown_link_not_cached(
    admin: Admin, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    # A rejection must not be cached: the person added next opens at once.
    assert open_link(gateway, tenant.link_query("777")).status_code == 404
    admin.add_person(tenant.id, "777", "Neu Angelegt")
    page = open_link(gateway, tenant.link_query("777"))
    assert page.status_code == 200
    assert "Neu Angelegt" in page.text


# The events themselves


@pytest.fixture
async def directory_subscriber(nats_url: str) -> AsyncIterator[Client]:
    nc = await messaging.connect([nats_url], "test-directory-events")
    try:
        yield nc
    finally:
        await nc.close()


async def next_event(messages_: asyncio.Queue[Msg], tenant_id: str) -> Msg:
    """Return the next event of `tenant_id`, skipping other tenants' events."""
    async with asyncio.timeout(EVENT_TIMEOUT):
        while True:
            msg = await messages_.get()
            if msg.subject.endswith(tenant_id):
                return msg


async def test_changes_publish_events(
    admin: Admin, directory_subscriber: Client
) -> None:
    received: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        await received.put(msg)

    await directory_subscriber.subscribe(subjects.DIRECTORY_EVENTS_WILDCARD, cb=collect)
    await directory_subscriber.flush()

    tenant_id = admin.create_tenant()["id"]
    admin.update_tenant(tenant_id, name="Umbenannt")
    admin.update_tenant(tenant_id, intake_enabled=False)
    issued = admin.issue_secret(tenant_id)
    rotated = admin.tenants.post(f"/admin/tenants/{tenant_id}/secrets/rotate").json()
    admin.revoke_secret(tenant_id, rotated["info"]["id"])
    admin.add_person(tenant_id, "00/47", "Anna Muster")
    off = admin.personnel.post(
        f"/admin/tenants/{tenant_id}/person/deactivate", params={"number": "00/47"}
    )
    assert off.status_code == 200
    imported = admin.personnel.post(
        f"/admin/tenants/{tenant_id}/people/import",
        content=b"Personalnummer;Name\n1;Bea\n2;Carl\n",
    )
    assert imported.status_code == 200

    tenant_events = []
    for _ in range(6):
        msg = await next_event(received, tenant_id)
        assert msg.subject == subjects.tenant_changed(tenant_id)
        tenant_events.append(
            msgspec.json.decode(msg.data, type=directory_events.TenantChanged)
        )
        assert issued["secret"].encode() not in msg.data
        assert rotated["secret"].encode() not in msg.data
    assert [(e.change, e.fields) for e in tenant_events] == [
        ("created", []),
        ("updated", ["name"]),
        ("intake_disabled", ["intake_enabled"]),
        ("secret_issued", []),
        ("secret_rotated", []),
        ("secret_revoked", []),
    ]
    assert tenant_events[3].secret_id == issued["info"]["id"]
    assert tenant_events[5].secret_id == rotated["info"]["id"]

    person_events = []
    for _ in range(3):
        msg = await next_event(received, tenant_id)
        assert msg.subject == subjects.person_changed(tenant_id)
        person_events.append(
            msgspec.json.decode(msg.data, type=directory_events.PersonChanged)
        )
    assert [(e.change, e.personnel_number, e.count) for e in person_events] == [
        ("created", "00/47", 1),
        ("deactivated", "00/47", 1),
        ("imported", None, 2),
    ]


async def test_unchanged_update_publishes_nothing(
    admin: Admin, directory_subscriber: Client
) -> None:
    tenant_id = admin.create_tenant(name="Gleich")["id"]
    sub = await directory_subscriber.subscribe(subjects.tenant_changed(tenant_id))
    await directory_subscriber.flush()
    admin.update_tenant(tenant_id, name="Gleich")
    admin.update_tenant(tenant_id, name="Anders")
    msg = await sub.next_msg(timeout=EVENT_TIMEOUT)
    event = msgspec.json.decode(msg.data, type=directory_events.TenantChanged)
    assert event.fields == ["name"]


# A reconnect clears the cache


FORM = messages.TenantForm(
    tenant_id="7d9f4c2e-0000-4000-8000-000000000001",
    name="Heim",
    language="de",
    categories=["IT"],
)
PERSON = messages.Person(personnel_number="004711", display_name="Jörg Bäcker")
SECRET_ID = "5d2e7c10-8b3a-4f6e-9c21-7a4b0e1f3d59"


async def wait_connected(nc: Client, reconnects: int, timeout: float = 20.0) -> None:
    """Poll every 50 ms until `nc` has reconnected; fail after `timeout` s."""
    for _ in range(int(timeout / 0.05)):
        if nc.is_connected and nc.stats["reconnects"] >= reconnects:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"no reconnect within {timeout} s: {nc.stats}")


async def test_reconnect_clears_cache(tmp_path: Path) -> None:
    """Events sent while the gateway was cut off are lost, so after a
    reconnect every lookup queries the services again."""
    server = EmbeddedNats(tmp_path / "nats")
    await asyncio.to_thread(server.start)
    gateway_nc = responder_nc = None
    try:
        gateway_nc = await messaging.connect([server.url], "test-gateway")
        responder_nc = await messaging.connect([server.url], "test-responder")
        secret_requests: list[Msg] = []

        async def resolve_secret(msg: Msg) -> None:
            secret_requests.append(msg)
            reply = messages.TenantResolved(tenant=FORM, secret_id=SECRET_ID)
            await msg.respond(messages.ENCODER.encode(reply))

        async def resolve_person(msg: Msg) -> None:
            reply = messages.PersonResolved(person=PERSON)
            await msg.respond(messages.ENCODER.encode(reply))

        await responder_nc.subscribe(subjects.TENANT_RESOLVE_SECRET, cb=resolve_secret)
        await responder_nc.subscribe(subjects.PERSONNEL_RESOLVE, cb=resolve_person)
        await responder_nc.flush()

        directory = Directory(gateway_nc, 2.0, LookupCache(30))
        first = await directory.resolve_link("k7Q2xLm9Rt4vZp1W", "004711", "r1")
        cached = await directory.resolve_link("k7Q2xLm9Rt4vZp1W", "004711", "r2")
        assert isinstance(first, Reporter)
        assert first.secret_id == SECRET_ID
        assert cached == first
        assert len(secret_requests) == 1

        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await wait_connected(gateway_nc, 1)
        await wait_connected(responder_nc, 1)

        again = await directory.resolve_link("k7Q2xLm9Rt4vZp1W", "004711", "r3")
        assert again == first
        assert len(secret_requests) == 2
    finally:
        for nc in (gateway_nc, responder_nc):
            if nc is not None:
                await nc.close()
        await asyncio.to_thread(server.stop)
