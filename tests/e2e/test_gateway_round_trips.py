"""The NATS round trips a form post makes, counted in the gateway's metrics.

A post of a form the gateway rendered recently sends no request to another
service: the tenant and person checks come from the lookup cache, and a
repeat of a young form is caught by JetStream's duplicate window. Forms
older than the window are looked up in the ticket service first, unless the
replica accepted them itself. A second replica shows the response to a
repeat of a form that another replica accepted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import nats
import pytest
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from linkdesk.processes import ServiceProcess, Stack
from services.gateway import form_token
from services.gateway.duplicate_window import SAFETY_SHARE, DuplicateWindow
from shared import subjects
from shared.embedded import free_port
from tests.helpers import (
    LINK_PATH,
    VALID_FIELDS,
    Admin,
    TenantFixture,
    open_link,
    wait_until_consumed,
)
from tests.helpers import form_token as page_token

FORM_TYPE = "application/x-www-form-urlencoded"


def counter(gateway_url: str, name: str, **labels: str) -> float:
    """Sum the gateway's samples of counter `name` whose labels include `labels`."""
    response = httpx.get(f"{gateway_url}/metrics", timeout=10.0)
    assert response.status_code == 200
    total = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name != f"{name}_total":
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def lookups(stack: Stack) -> float:
    return sum(
        counter(stack.url("gateway"), "linkdesk_nats_requests", subject=subject)
        for subject in (subjects.TENANT_GET, subjects.PERSONNEL_RESOLVE)
    )


def duplicates(gateway_url: str) -> float:
    return counter(
        gateway_url,
        "linkdesk_events_published",
        event_type="submitted",
        outcome="duplicate",
    )


def ticket_lookups(gateway_url: str) -> float:
    return counter(
        gateway_url, "linkdesk_nats_requests", subject=subjects.TICKET_FIND_SUBMISSION
    )


def post(gateway: httpx.Client, token: str, **changes: str) -> httpx.Response:
    fields = {"form_token": token, **VALID_FIELDS, **changes}
    return gateway.post(
        "/public/tickets",
        content=urlencode(fields).encode(),
        headers={"Content-Type": FORM_TYPE},
    )


def open_token(gateway: httpx.Client, tenant: TenantFixture) -> str:
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    return page_token(page)


def aged(form_key: bytes, token: str) -> str:
    """Return `token` as if its form was first rendered a day ago and renewed
    since, so that it is older than the stream's duplicate window."""
    context = form_token.verify(form_key, token)
    return form_token.sign(
        form_key,
        msgspec.structs.replace(context, first_rendered_at=int(time.time()) - 86_400),
    )


def accept_form(
    gateway: httpx.Client, tenant: TenantFixture, admin: Admin
) -> tuple[str, httpx.Response]:
    """Open and post a form, and wait until its ticket is stored. Return the
    form token and the response to the post."""
    token = open_token(gateway, tenant)
    first = post(gateway, token)
    assert first.status_code == 303
    admin.wait_for_tickets(tenant.id, 1)
    return token, first


def reference_of(answer: httpx.Response) -> str:
    return answer.headers["location"].split("/")[3].split("?")[0]


def logged(path: Path, event: str, submission_id: str) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event and record.get("submission_id") == (
            submission_id
        ):
            records.append(record)
    return records


def assert_repeats_answered(
    gateway: httpx.Client, token: str, first: httpx.Response
) -> None:
    """Post `token` again to `gateway`, with the values of `first` and with
    another subject, and check the confirmation and the 409."""
    same = post(gateway, token)
    changed = post(gateway, token, subject="Ein anderer Betreff")

    assert same.status_code == 303
    assert same.headers["location"] == first.headers["location"]
    assert changed.status_code == 409
    assert reference_of(first) in changed.text


@asynccontextmanager
async def short_duplicate_window(nats_url: str) -> AsyncIterator[JetStreamContext]:
    """Shrink the ticket stream's duplicate window to 1 s for the block, so
    that JetStream stores a second publish of one form a second later."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    config = (await js.stream_info(subjects.TICKET_STREAM)).config
    try:
        await js.update_stream(config.evolve(duplicate_window=1.0))
        yield js
    finally:
        await js.update_stream(config)
        await nc.close()


@pytest.fixture(scope="module")
def replica(stack: Stack, work_dir: Path) -> Iterator[ServiceProcess]:
    """A second gateway replica, which accepts none of the first one's forms."""
    process = ServiceProcess(
        "gateway",
        free_port(),
        stack.services["gateway"].env,
        work_dir / "logs" / "gateway-replica.log",
    )
    try:
        process.start()
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
def other(replica: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replica.url, timeout=10.0) as client:
        yield client


def test_opened_form_posts_without_lookups(
    stack: Stack, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    tokens = [open_token(gateway, tenant) for _ in range(3)]
    before = lookups(stack)

    answers = [post(gateway, token) for token in tokens]

    assert [answer.status_code for answer in answers] == [303, 303, 303]
    assert lookups(stack) == before


def test_young_form_repeat_caught_by_publish(
    stack: Stack, gateway: httpx.Client, tenant: TenantFixture
) -> None:
    token = open_token(gateway, tenant)
    assert post(gateway, token).status_code == 303
    before = duplicates(stack.url("gateway"))

    again = post(gateway, token, subject="Ein anderer Betreff")

    assert again.status_code == 409
    assert duplicates(stack.url("gateway")) == before + 1


def test_old_form_repeat_looked_up_before_publish(
    stack: Stack, gateway: httpx.Client, tenant: TenantFixture, form_key: bytes
) -> None:
    token = open_token(gateway, tenant)
    first = post(gateway, token)
    assert first.status_code == 303
    old = aged(form_key, token)
    before = duplicates(stack.url("gateway"))

    assert_repeats_answered(gateway, old, first)

    assert duplicates(stack.url("gateway")) == before


def test_young_repeat_on_other_replica_read_from_stream(
    gateway: httpx.Client,
    other: httpx.Client,
    replica: ServiceProcess,
    tenant: TenantFixture,
    admin: Admin,
) -> None:
    token = open_token(gateway, tenant)
    first = post(gateway, token)
    assert first.status_code == 303
    duplicates_before = duplicates(replica.url)
    lookups_before = ticket_lookups(replica.url)

    assert_repeats_answered(other, token, first)

    assert duplicates(replica.url) == duplicates_before + 2
    assert ticket_lookups(replica.url) == lookups_before
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == VALID_FIELDS["subject"]


def test_old_repeat_on_other_replica_asks_ticket_service(
    gateway: httpx.Client,
    other: httpx.Client,
    replica: ServiceProcess,
    tenant: TenantFixture,
    admin: Admin,
    form_key: bytes,
) -> None:
    token, first = accept_form(gateway, tenant, admin)
    old = aged(form_key, token)
    duplicates_before = duplicates(replica.url)
    lookups_before = ticket_lookups(replica.url)

    assert_repeats_answered(other, old, first)

    assert ticket_lookups(replica.url) == lookups_before + 2
    assert duplicates(replica.url) == duplicates_before


def test_old_form_accepted_while_ticket_service_down(
    running_stack: Stack,
    gateway: httpx.Client,
    other: httpx.Client,
    replica: ServiceProcess,
    tenant: TenantFixture,
    admin: Admin,
    form_key: bytes,
) -> None:
    """Without the ticket service, an old form is published unchecked. A
    changed repeat on another replica is then caught by the stream."""
    token = aged(form_key, open_token(gateway, tenant))
    submission_id = form_token.verify(form_key, token).submission_id
    running_stack.services["ticket"].stop()

    first = post(gateway, token)
    changed = post(other, token, subject="Ein anderer Betreff")

    assert first.status_code == 303
    assert changed.status_code == 409
    assert reference_of(first) in changed.text
    for process in (running_stack.services["gateway"], replica):
        [unreadable] = logged(
            process.log_path, "accepted_form_unreadable", submission_id
        )
        assert unreadable["reason"] == "no_responders"
    running_stack.start("ticket")
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == VALID_FIELDS["subject"]


async def test_unreadable_first_event_asks_ticket_service(
    gateway: httpx.Client,
    other: httpx.Client,
    tenant: TenantFixture,
    admin: Admin,
    nats_url: str,
) -> None:
    token, first = accept_form(gateway, tenant, admin)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        event = await js.get_last_msg(
            subjects.TICKET_STREAM, subjects.ticket_submitted(tenant.id)
        )
        await js.delete_msg(subjects.TICKET_STREAM, event.seq)
    finally:
        await nc.close()

    changed = post(other, token, subject="Ein anderer Betreff")

    assert changed.status_code == 409
    assert reference_of(first) in changed.text


async def test_unsure_accept_not_remembered(
    running_stack: Stack,
    gateway: httpx.Client,
    other: httpx.Client,
    tenant: TenantFixture,
    admin: Admin,
    form_key: bytes,
    nats_url: str,
) -> None:
    """A post of an old form that no source could check is published, but the
    replica does not take it for the accepted form."""
    token = aged(form_key, open_token(gateway, tenant))
    assert post(other, token).status_code == 303
    admin.wait_for_tickets(tenant.id, 1)
    async with short_duplicate_window(nats_url) as js:
        await asyncio.sleep(1.5)
        running_stack.services["ticket"].stop()
        assert post(gateway, token, subject="Ein anderer Betreff").status_code == 303
        running_stack.start("ticket")
        await wait_until_consumed(js)

    same = post(gateway, token)
    changed = post(gateway, token, subject="Ein anderer Betreff")

    assert same.status_code == 303
    assert changed.status_code == 409
    [ticket] = admin.list_tickets(tenant.id)
    assert ticket["subject"] == VALID_FIELDS["subject"]


async def test_old_form_not_remembered_while_store_lags(
    running_stack: Stack,
    gateway: httpx.Client,
    other: httpx.Client,
    tenant: TenantFixture,
    admin: Admin,
    form_key: bytes,
    nats_url: str,
) -> None:
    """While the ticket service cannot store yet, it reports an old form as
    not stored, so a second text is published too. The replica that posted
    it must follow the ticket, not its own post."""
    token = aged(form_key, open_token(gateway, tenant))
    # The recheck at submit time then comes from each replica's cache.
    assert open_link(other, tenant.link_query()).status_code == 200
    async with short_duplicate_window(nats_url) as js:
        # The ticket service checks a tenant it has not stored for yet with
        # the tenant service, so it stores nothing of it meanwhile.
        running_stack.services["tenant"].stop()
        assert post(gateway, token).status_code == 303
        await asyncio.sleep(1.5)
        assert post(other, token, subject="Ein anderer Betreff").status_code == 303
        running_stack.start("tenant")
        await wait_until_consumed(js)

    [ticket] = admin.list_tickets(tenant.id)
    stored = {**VALID_FIELDS, "subject": ticket["subject"]}
    other_text = "Ein dritter Betreff"
    same = post(other, token, **stored)
    changed = post(other, token, **{**stored, "subject": other_text})

    assert same.status_code == 303
    assert changed.status_code == 409


async def test_window_read_from_stream(stack: Stack, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        info = await nc.jetstream().stream_info(subjects.TICKET_STREAM)
        window = DuplicateWindow(nc, timeout=2.0)
        now = int(time.time())

        assert await window.covers(now - 1)
        assert window.seconds == info.config.duplicate_window
        usable = int(window.seconds * (1 - SAFETY_SHARE))
        assert not await window.covers(now - usable - 1)
        assert not await window.covers(0)
    finally:
        await nc.close()


async def test_unknown_window_covers_nothing(stack: Stack, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    window = DuplicateWindow(nc, timeout=2.0)
    assert await window.covers(int(time.time()) - 1)
    await nc.close()

    await window.refresh()

    assert window.seconds == 0
    assert not await window.covers(int(time.time()) - 1)


async def test_concurrent_posts_one_accepted(
    stack: Stack, tenant: TenantFixture, admin: Admin
) -> None:
    """Posts of one form with other texts at once: one 303, the others 409,
    and the text of the 303 is the stored one."""
    async with httpx.AsyncClient(base_url=stack.url("gateway")) as client:
        for done in range(20):
            page = await client.get(f"{LINK_PATH}?{tenant.link_query()}")
            token = page_token(page)
            subjects_sent = [f"Betreff {uuid.uuid4().hex[:8]}" for _ in range(3)]
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/public/tickets",
                        content=urlencode(
                            {"form_token": token, **VALID_FIELDS, "subject": subject}
                        ).encode(),
                        headers={"Content-Type": FORM_TYPE},
                    )
                    for subject in subjects_sent
                )
            )
            statuses = sorted(answer.status_code for answer in answers)
            assert statuses == [303, 409, 409]
            [accepted] = [
                subject
                for subject, answer in zip(subjects_sent, answers, strict=True)
                if answer.status_code == 303
            ]
            stored = admin.wait_for_tickets(tenant.id, done + 1)
            assert accepted in {ticket["subject"] for ticket in stored}


def test_repeat_after_revocation_confirmed(
    gateway: httpx.Client, tenant: TenantFixture, admin: Admin
) -> None:
    accepted_token = open_token(gateway, tenant)
    unsent_token = open_token(gateway, tenant)
    first = post(gateway, accepted_token)
    assert first.status_code == 303
    admin.revoke_secret(tenant.id, tenant.secret_id)

    again = post(gateway, accepted_token)
    unsent = post(gateway, unsent_token)

    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert unsent.status_code == 404


def test_repeat_at_submission_limit_confirmed(
    gateway: httpx.Client, tenant: TenantFixture
) -> None:
    # The session's gateway allows 20 forms per person and hour.
    tokens = [open_token(gateway, tenant) for _ in range(21)]
    answers = [post(gateway, token) for token in tokens[:20]]
    assert [answer.status_code for answer in answers] == [303] * 20
    assert post(gateway, tokens[20]).status_code == 429

    again = post(gateway, tokens[19])

    assert again.status_code == 303
    assert again.headers["location"] == answers[19].headers["location"]
