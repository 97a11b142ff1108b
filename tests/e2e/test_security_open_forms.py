"""Forms opened before their link secret or signing key stopped working.

A form token names the secret or key that opened its form, and on submit
the gateway sends that id to the tenant service, which checks that the
credential still works. So revoking a
secret or key, or letting it expire, also stops forms that are already
open, and an expired form token is renewed only while its credential works.

"Nothing published" is checked on the TICKETS stream: the gateway answers
a valid post only after JetStream stored its event.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import nats
import pytest
from nats.js import JetStreamContext

from linkdesk.processes import Stack
from services.gateway import form_token
from shared import signed_link, subjects
from tests.helpers import (
    LINK_PATH,
    Admin,
    TenantFixture,
    open_link,
    post_form,
)
from tests.helpers import form_token as page_token

LOG_TIMEOUT = 5.0
"""Seconds to wait for the gateway's log line of a rejection."""


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield nc.jetstream(timeout=5.0)
    finally:
        await nc.close()


async def published(js: JetStreamContext, tenant_id: str) -> int:
    """Return how many submissions of the tenant the TICKETS stream holds."""
    subject = subjects.ticket_submitted(tenant_id)
    info = await js.stream_info(subjects.TICKET_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def open_form(gateway: httpx.Client, tenant: TenantFixture) -> str:
    """Open the tenant's raw link and return the form token."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    return page_token(page)


def rejection_reasons(stack: Stack, offset: int, count: int) -> list[str]:
    """Return the reasons of the gateway's `link_rejected` lines after byte
    `offset`, waiting up to `LOG_TIMEOUT` seconds for `count` of them."""
    log = stack.services["gateway"].log_path
    deadline = time.monotonic() + LOG_TIMEOUT
    while True:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
        reasons = []
        for line in lines:
            try:
                record: Any = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == "link_rejected":
                reasons.append(str(record.get("reason")))
        if len(reasons) >= count or time.monotonic() > deadline:
            return reasons
        time.sleep(0.05)


def log_offset(stack: Stack) -> int:
    return stack.services["gateway"].log_path.stat().st_size


def neutral_page(gateway: httpx.Client) -> bytes:
    answer = gateway.get(f"{LINK_PATH}?x")
    assert answer.status_code == 404
    return answer.content


def expired_copy(key: bytes, token: str) -> str:
    """Return the token's form with an expiry an hour ago, signed with `key`."""
    context = form_token.verify(key, token)
    expired = msgspec.structs.replace(context, expires_at=int(time.time()) - 3600)
    return form_token.sign(key, expired)


# Raw links


async def test_revoked_secret_stops_open_form(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    jetstream: JetStreamContext,
) -> None:
    token = open_form(gateway, tenant)
    admin.revoke_secret(tenant.id, tenant.secret_id)
    offset = log_offset(stack)

    answer = post_form(gateway, token)

    assert answer.status_code == 404
    assert answer.content == neutral_page(gateway)
    assert rejection_reasons(stack, offset, 1)[:1] == ["revoked_secret"]
    assert await published(jetstream, tenant.id) == 0
    assert admin.list_tickets(tenant.id) == []


async def test_rotation_grace_keeps_open_form(
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    jetstream: JetStreamContext,
) -> None:
    token = open_form(gateway, tenant)
    rotated = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": 600}
    )
    assert rotated.status_code == 201, rotated.text
    assert [s["id"] for s in rotated.json()["expiring"]] == [tenant.secret_id]

    answer = post_form(gateway, token)

    assert answer.status_code == 303
    assert await published(jetstream, tenant.id) == 1
    admin.wait_for_tickets(tenant.id, 1)


async def test_rotation_without_grace_stops_open_form(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    jetstream: JetStreamContext,
) -> None:
    token = open_form(gateway, tenant)
    rotated = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": 0}
    )
    assert rotated.status_code == 201, rotated.text
    offset = log_offset(stack)

    answer = post_form(gateway, token)

    assert answer.status_code == 404
    assert rejection_reasons(stack, offset, 1)[:1] == ["expired_secret"]
    assert await published(jetstream, tenant.id) == 0

    # A form opened through the new secret goes through.
    renewed = TenantFixture(
        tenant.id,
        rotated.json()["secret"],
        rotated.json()["info"]["id"],
        tenant.personnel_number,
    )
    assert post_form(gateway, open_form(gateway, renewed)).status_code == 303
    assert await published(jetstream, tenant.id) == 1


async def test_expired_token_renewal_needs_valid_secret(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    form_key: bytes,
    jetstream: JetStreamContext,
) -> None:
    token = open_form(gateway, tenant)
    opened = form_token.verify(form_key, token)
    expired = expired_copy(form_key, token)

    # While the secret works, an expired token gets the form with a fresh
    # token for the same submission and the same secret.
    renewed_page = post_form(gateway, expired)
    assert renewed_page.status_code == 400
    renewed = form_token.verify(form_key, page_token(renewed_page))
    assert renewed.submission_id == opened.submission_id
    assert renewed.secret_id == opened.secret_id
    assert renewed.expires_at > time.time()

    admin.revoke_secret(tenant.id, tenant.secret_id)
    offset = log_offset(stack)

    answer = post_form(gateway, expired)

    assert answer.status_code == 404
    assert answer.content == neutral_page(gateway)
    assert 'name="form_token"' not in answer.text
    assert rejection_reasons(stack, offset, 1)[:1] == ["revoked_secret"]
    # The token renewed before the revocation stops as well.
    assert post_form(gateway, page_token(renewed_page)).status_code == 404
    assert await published(jetstream, tenant.id) == 0


async def test_secret_of_other_tenant_rejected(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    form_key: bytes,
    jetstream: JetStreamContext,
) -> None:
    other = admin.create_tenant_with_person("004711", "Anna Muster")
    context = form_token.verify(form_key, open_form(gateway, tenant))
    # Signed with the gateway's key, so only the tenant service can catch it.
    mixed = msgspec.structs.replace(context, secret_id=other.secret_id)
    offset = log_offset(stack)

    answer = post_form(gateway, form_token.sign(form_key, mixed))

    assert answer.status_code == 404
    assert rejection_reasons(stack, offset, 1)[:1] == ["unknown_secret"]
    assert await published(jetstream, tenant.id) == 0


async def test_token_without_secret_id_rejected(
    gateway: httpx.Client,
    tenant: TenantFixture,
    form_key: bytes,
    jetstream: JetStreamContext,
) -> None:
    # The shape of tokens signed before they named their secret.
    context = form_token.verify(form_key, open_form(gateway, tenant))
    for expires_at in (context.expires_at, int(time.time()) - 3600):
        old = msgspec.structs.replace(context, secret_id=None, expires_at=expires_at)
        answer = post_form(gateway, form_token.sign(form_key, old))
        assert answer.status_code == 400, expires_at
        assert 'name="form_token"' not in answer.text, expires_at
    assert await published(jetstream, tenant.id) == 0


# Signed links


@dataclass
class SignedTenant:
    id: str
    key_id: str
    key: str


@pytest.fixture
def signed_tenant(admin: Admin) -> SignedTenant:
    """A tenant with intake on, the person `004711` and one signing key."""
    tenant = admin.create_tenant(categories=["IT"])
    admin.add_person(tenant["id"], "004711", "Jörg Bäcker")
    response = admin.tenants.post(f"/admin/tenants/{tenant['id']}/signing-keys")
    assert response.status_code == 201, response.text
    issued = response.json()
    return SignedTenant(tenant["id"], issued["key_id"], issued["key"])


def open_signed_form(gateway: httpx.Client, tenant: SignedTenant) -> str:
    claims = signed_link.Claims(
        tenant_id=tenant.id,
        personnel_number="004711",
        expires_at=int(time.time()) + 300,
    )
    token = signed_link.sign(tenant.key_id, tenant.key, claims)
    page = gateway.get(f"{LINK_PATH}?sig={token}")
    assert page.status_code == 200
    return page_token(page)


async def test_revoked_key_stops_open_form(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    signed_tenant: SignedTenant,
    form_key: bytes,
    jetstream: JetStreamContext,
) -> None:
    token = open_signed_form(gateway, signed_tenant)
    assert form_token.verify(form_key, token).key_id == signed_tenant.key_id
    expired = expired_copy(form_key, token)
    revoked = admin.tenants.post(
        f"/admin/tenants/{signed_tenant.id}/signing-keys/{signed_tenant.key_id}/revoke"
    )
    assert revoked.status_code == 200, revoked.text
    offset = log_offset(stack)

    answer = post_form(gateway, token)
    expired_answer = post_form(gateway, expired)

    assert answer.status_code == 404
    assert answer.content == neutral_page(gateway)
    assert expired_answer.status_code == 404
    assert rejection_reasons(stack, offset, 2)[:2] == ["revoked_key", "revoked_key"]
    assert await published(jetstream, signed_tenant.id) == 0


async def test_key_rotation_grace_decides_open_form(
    stack: Stack,
    gateway: httpx.Client,
    admin: Admin,
    signed_tenant: SignedTenant,
    jetstream: JetStreamContext,
) -> None:
    rotate = f"/admin/tenants/{signed_tenant.id}/signing-keys/rotate"
    kept = open_signed_form(gateway, signed_tenant)
    rotated = admin.tenants.post(rotate, json={"grace_seconds": 600})
    assert rotated.status_code == 201, rotated.text
    assert post_form(gateway, kept).status_code == 303
    assert await published(jetstream, signed_tenant.id) == 1

    newer = SignedTenant(
        signed_tenant.id, rotated.json()["key_id"], rotated.json()["key"]
    )
    stopped = open_signed_form(gateway, newer)
    assert admin.tenants.post(rotate, json={"grace_seconds": 0}).status_code == 201
    offset = log_offset(stack)

    assert post_form(gateway, stopped).status_code == 404
    assert rejection_reasons(stack, offset, 1)[:1] == ["expired_key"]
    assert await published(jetstream, signed_tenant.id) == 1


async def test_expired_signed_link_form_not_renewed(
    stack: Stack,
    gateway: httpx.Client,
    signed_tenant: SignedTenant,
    form_key: bytes,
    jetstream: JetStreamContext,
) -> None:
    """A form lives its own lifetime, but is not renewed past its link's expiry."""
    token = open_signed_form(gateway, signed_tenant)
    context = form_token.verify(form_key, token)
    assert context.link_expires_at > time.time()
    still_valid_link = expired_copy(form_key, token)
    past = msgspec.structs.replace(
        context,
        expires_at=int(time.time()) - 3600,
        link_expires_at=int(time.time()) - 60,
    )
    link_expired = form_token.sign(form_key, past)
    offset = log_offset(stack)

    renewed = post_form(gateway, still_valid_link)
    refused = post_form(gateway, link_expired)

    assert renewed.status_code == 400
    assert "form_token" in renewed.text
    assert refused.status_code == 404
    assert refused.content == neutral_page(gateway)
    assert rejection_reasons(stack, offset, 1)[:1] == ["expired_link"]
    assert await published(jetstream, signed_tenant.id) == 0
