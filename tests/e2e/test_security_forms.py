"""Forged, cross-site and replayed posts, and bodies over the limits.

"Nothing published" is checked on the TICKETS stream: the gateway answers
a valid post only after JetStream stored its event, so a rejected post has
no event for its tenant.
"""

from __future__ import annotations

import html
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlencode

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from services.gateway import form_body, form_token, i18n
from shared import subjects
from tests.helpers import (
    VALID_FIELDS,
    Admin,
    TenantFixture,
    open_link,
)
from tests.helpers import form_token as page_token

FORM_TYPE = "application/x-www-form-urlencoded"


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield nc.jetstream(timeout=5.0)
    finally:
        await nc.close()


async def published(js: JetStreamContext, tenant: TenantFixture) -> int:
    subject = subjects.ticket_submitted(tenant.id)
    info = await js.stream_info(subjects.TICKET_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def post(
    gateway: httpx.Client,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return gateway.post(
        "/public/tickets",
        content=urlencode(fields).encode(),
        headers={"Content-Type": FORM_TYPE, **(headers or {})},
    )


def open_token(gateway: httpx.Client, tenant: TenantFixture) -> str:
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    return page_token(page)


def text_of(answer: httpx.Response) -> str:
    return html.unescape(answer.text)


# Forged posts


async def test_token_of_other_key_rejected(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    context = form_token.FormContext(
        tenant_id=tenant.id,
        tenant_name="Forged",
        personnel_number="004711",
        person_name="Jörg Bäcker",
        language="de",
        categories=["IT"],
        submission_id=str(uuid.uuid4()),
        expires_at=int(time.time()) + 600,
    )
    forged = form_token.sign(secrets.token_bytes(32), context)
    answer = post(gateway, {"form_token": forged, **VALID_FIELDS})

    assert answer.status_code == 400
    assert i18n.texts("de")["bad_request_message"] in text_of(answer)
    assert await published(jetstream, tenant) == 0


async def test_missing_token_rejected(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    open_token(gateway, tenant)
    answer = post(gateway, dict(VALID_FIELDS))
    assert answer.status_code == 400
    assert i18n.texts("de")["bad_request_message"] in text_of(answer)
    assert await published(jetstream, tenant) == 0


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Sec-Fetch-Site": "cross-site"}, id="cross-site-fetch"),
        pytest.param({"Sec-Fetch-Site": "same-site"}, id="same-site-fetch"),
        pytest.param({"Origin": "https://evil.example"}, id="foreign-origin"),
        pytest.param(
            {"Referer": "https://evil.example/form.html"}, id="foreign-referer"
        ),
    ],
)
async def test_cross_site_post_rejected(
    gateway: httpx.Client,
    tenant: TenantFixture,
    jetstream: JetStreamContext,
    headers: dict[str, str],
) -> None:
    token = open_token(gateway, tenant)
    answer = post(gateway, {"form_token": token, **VALID_FIELDS}, headers)

    assert answer.status_code == 403
    assert i18n.texts("de")["forbidden_message"] in text_of(answer)
    assert answer.headers["cache-control"] == "no-store"
    assert await published(jetstream, tenant) == 0

    # The same form sent from its own page still goes through.
    same_site = post(gateway, {"form_token": token, **VALID_FIELDS})
    assert same_site.status_code == 303
    assert await published(jetstream, tenant) == 1


@pytest.mark.parametrize(
    "headers",
    [
        # What a browser sends for our own form: its page has
        # `Referrer-Policy: no-referrer`, so the origin is `null`.
        pytest.param({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, id="null"),
        pytest.param({"Sec-Fetch-Site": "none"}, id="fetch-site-none"),
        pytest.param({}, id="no-headers"),
    ],
)
def test_same_origin_post_accepted(
    gateway: httpx.Client, tenant: TenantFixture, headers: dict[str, str]
) -> None:
    token = open_token(gateway, tenant)
    answer = post(gateway, {"form_token": token, **VALID_FIELDS}, headers)
    assert answer.status_code == 303


def test_own_origin_accepted(gateway: httpx.Client, tenant: TenantFixture) -> None:
    token = open_token(gateway, tenant)
    origin = str(gateway.base_url).rstrip("/")
    answer = post(
        gateway,
        {"form_token": token, **VALID_FIELDS},
        {"Origin": origin, "Referer": f"{origin}/public/tickets"},
    )
    assert answer.status_code == 303


# Replayed posts


async def test_replay_with_same_values_redirects(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    token = open_token(gateway, tenant)
    first = post(gateway, {"form_token": token, **VALID_FIELDS})
    assert first.status_code == 303
    again = post(gateway, {"form_token": token, **VALID_FIELDS})
    assert again.status_code == 303
    assert again.headers["location"] == first.headers["location"]
    assert await published(jetstream, tenant) == 1


async def test_replay_with_other_values_rejected(
    gateway: httpx.Client,
    tenant: TenantFixture,
    admin: Admin,
    jetstream: JetStreamContext,
) -> None:
    token = open_token(gateway, tenant)
    first = post(gateway, {"form_token": token, **VALID_FIELDS})
    assert first.status_code == 303
    reference = first.headers["location"].split("/")[3].split("?")[0]

    changed = {**VALID_FIELDS, "subject": "Ganz anderer Text"}
    answer = post(gateway, {"form_token": token, **changed})
    assert answer.status_code == 409
    expected = i18n.texts("de")["already_sent_message"].format(reference=reference)
    assert expected in text_of(answer)
    assert await published(jetstream, tenant) == 1
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["subject"] == VALID_FIELDS["subject"]


# Bodies over the limits


def multipart(parts: list[tuple[str, bytes]], boundary: str) -> bytes:
    chunks = [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        ).encode()
        + value
        + b"\r\n"
        for name, value in parts
    ]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


def post_multipart(gateway: httpx.Client, body: bytes, boundary: str) -> httpx.Response:
    return gateway.post(
        "/public/tickets",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )


async def test_multipart_with_20_mb_part_gets_413(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    token = open_token(gateway, tenant)
    boundary = "x" + uuid.uuid4().hex
    body = multipart(
        [("form_token", token.encode()), ("description", b"x" * 20 * 1024 * 1024)],
        boundary,
    )
    answer = post_multipart(gateway, body, boundary)
    assert answer.status_code == 413
    limit = i18n.texts("de")["request_too_large_message"].format(limit="256 KB")
    assert limit in text_of(answer)
    assert await published(jetstream, tenant) == 0


async def test_multipart_with_2000_parts_gets_413(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    token = open_token(gateway, tenant)
    boundary = "x" + uuid.uuid4().hex
    parts = [("form_token", token.encode())]
    parts += [(f"p{index}", b"1") for index in range(2000)]
    body = multipart(parts, boundary)
    assert len(body) < 262_144
    answer = post_multipart(gateway, body, boundary)

    assert answer.status_code == 413
    message = i18n.texts("de")["too_many_fields_message"].format(
        max=form_body.MAX_FIELDS
    )
    assert message in text_of(answer)
    assert await published(jetstream, tenant) == 0


def test_small_multipart_gets_415(gateway: httpx.Client, tenant: TenantFixture) -> None:
    token = open_token(gateway, tenant)
    boundary = "x" + uuid.uuid4().hex
    body = multipart(
        [
            ("form_token", token.encode()),
            *((k, v.encode()) for k, v in VALID_FIELDS.items()),
        ],
        boundary,
    )
    assert post_multipart(gateway, body, boundary).status_code == 415


def post_chunked(gateway: httpx.Client, total: int) -> httpx.Response:
    return gateway.post(
        "/public/tickets", content=chunks(total), headers={"Content-Type": FORM_TYPE}
    )


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


async def test_chunked_body_over_limit_gets_413(
    gateway: httpx.Client, tenant: TenantFixture, jetstream: JetStreamContext
) -> None:
    open_token(gateway, tenant)
    # A generator body is sent with Transfer-Encoding: chunked, without a
    # Content-Length that the gateway could check up front.
    answer = post_chunked(gateway, 2 * 1024 * 1024)
    assert answer.status_code == 413
    assert await published(jetstream, tenant) == 0
