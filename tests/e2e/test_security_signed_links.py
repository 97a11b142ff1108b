"""Signed links against the running stack: keys, checks, presets, examples."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.js import JetStreamContext

from linkdesk import cli
from linkdesk.processes import Stack
from shared import signed_link, subjects
from tests.conftest import ADMIN_TOKEN
from tests.helpers import LINK_PATH, VALID_FIELDS, Admin, form_token, post_form

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class SignedTenant:
    id: str
    secret: str
    key_id: str
    key: str


@pytest.fixture
def signed_tenant(admin: Admin) -> SignedTenant:
    """A tenant with intake on, categories IT and Gebäude, person `004711`,
    a link secret and a signing key."""
    tenant = admin.create_tenant(categories=["IT", "Gebäude"])
    secret = admin.issue_secret(tenant["id"])["secret"]
    admin.add_person(tenant["id"], "004711", "Jörg Bäcker")
    response = admin.tenants.post(f"/admin/tenants/{tenant['id']}/signing-keys")
    assert response.status_code == 201, response.text
    issued = response.json()
    return SignedTenant(tenant["id"], secret, issued["key_id"], issued["key"])


def signed_query(
    tenant: SignedTenant,
    number: str = "004711",
    *,
    ttl: int = 300,
    location: str = "",
    category: str = "",
    key: str | None = None,
    tenant_id: str | None = None,
) -> str:
    claims = signed_link.Claims(
        tenant_id=tenant_id or tenant.id,
        personnel_number=number,
        expires_at=int(time.time()) + ttl,
        location=location,
        category=category,
    )
    token = signed_link.sign(tenant.key_id, key or tenant.key, claims)
    return f"{LINK_PATH}?sig={token}"


def open_target(gateway: httpx.Client, target: str) -> httpx.Response:
    return gateway.get(target)


@pytest.fixture
async def jetstream(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield nc.jetstream(timeout=5.0)
    finally:
        await nc.close()


def test_signed_link_opens_form(
    gateway: httpx.Client, signed_tenant: SignedTenant
) -> None:
    page = gateway.get(signed_query(signed_tenant))
    assert page.status_code == 200
    assert "Jörg Bäcker" in page.text
    assert '<dd translate="no">004711</dd>' in page.text
    assert post_form(gateway, form_token(page)).status_code == 303


async def test_presets_fixed_and_enforced(
    gateway: httpx.Client,
    signed_tenant: SignedTenant,
    admin: Admin,
    jetstream: JetStreamContext,
) -> None:
    page = open_target(
        gateway,
        signed_query(signed_tenant, location="Haus B, Raum 204", category="Gebäude"),
    )
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert 'value="Haus B, Raum 204" readonly' in text
    assert '<select id="category" name="category" disabled' in text
    assert '<option value="IT"' not in text

    # A post that tries other values still stores the fixed ones.
    answer = post_form(
        gateway,
        form_token(page),
        {**VALID_FIELDS, "category": "IT", "location": "Keller"},
    )
    assert answer.status_code == 303
    event = await jetstream.get_last_msg(
        subjects.TICKET_STREAM, subjects.ticket_submitted(signed_tenant.id)
    )
    assert event.data is not None
    data = json.loads(event.data)["data"]
    assert data["category"] == "Gebäude"
    assert data["location"] == "Haus B, Raum 204"
    [ticket] = admin.wait_for_tickets(signed_tenant.id, 1)
    assert ticket["category"] == "Gebäude"


def rejection_reasons(stack: Stack, offset: int, count: int) -> list[str]:
    log = stack.services["gateway"].log_path
    deadline = time.monotonic() + 5
    reasons: list[str] = []
    while time.monotonic() < deadline:
        with log.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", errors="replace").splitlines()
        reasons = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("event") == "link_rejected":
                reasons.append(str(record.get("reason")))
        if len(reasons) >= count:
            break
        time.sleep(0.05)
    return reasons


def test_invalid_signed_links_get_neutral_page(
    stack: Stack, gateway: httpx.Client, signed_tenant: SignedTenant, admin: Admin
) -> None:
    other = admin.create_tenant()
    neutral = gateway.get(f"{LINK_PATH}?x").content
    cases = {
        "link_expired": signed_query(signed_tenant, ttl=-1),
        "expiry_too_far": signed_query(signed_tenant, ttl=40 * 24 * 3600),
        "bad_signature": signed_query(signed_tenant, key="wrong key"),
        "tenant_mismatch": signed_query(signed_tenant, tenant_id=other["id"]),
        "unknown_category": signed_query(signed_tenant, category="Küche"),
        "unknown_person": signed_query(signed_tenant, number="999999"),
        "malformed_signed_link": f"{LINK_PATH}?sig=v1.{signed_tenant.key_id}.x",
    }
    log = stack.services["gateway"].log_path
    offset = log.stat().st_size
    for reason, target in cases.items():
        answer = gateway.get(target)
        assert answer.status_code == 404, reason
        assert answer.content == neutral, reason
    assert rejection_reasons(stack, offset, len(cases)) == list(cases)


def test_tampered_number_rejected(
    gateway: httpx.Client, signed_tenant: SignedTenant, admin: Admin
) -> None:
    admin.add_person(signed_tenant.id, "000815", "Andere Person")
    token = signed_query(signed_tenant).split("sig=", 1)[1]
    version, key_id, _, mac = token.split(".")
    payload = signed_link.encode_payload(
        signed_link.Claims(signed_tenant.id, "000815", int(time.time()) + 300)
    )
    answer = gateway.get(f"{LINK_PATH}?sig={version}.{key_id}.{payload}.{mac}")
    assert answer.status_code == 404


def test_revoked_and_rotated_keys(
    gateway: httpx.Client, signed_tenant: SignedTenant, admin: Admin
) -> None:
    base = f"/admin/tenants/{signed_tenant.id}/signing-keys"
    rotated = admin.tenants.post(f"{base}/rotate", json={"grace_seconds": 600})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert [key["id"] for key in new["expiring"]] == [signed_tenant.key_id]

    # Inside the grace period both keys work.
    assert gateway.get(signed_query(signed_tenant)).status_code == 200
    new_tenant = SignedTenant(
        signed_tenant.id, signed_tenant.secret, new["key_id"], new["key"]
    )
    assert gateway.get(signed_query(new_tenant)).status_code == 200

    revoked = admin.tenants.post(f"{base}/{signed_tenant.key_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert gateway.get(signed_query(signed_tenant)).status_code == 404
    assert gateway.get(signed_query(new_tenant)).status_code == 200

    listed = admin.tenants.get(base).json()
    assert {key["id"] for key in listed} == {signed_tenant.key_id, new["key_id"]}
    assert all("key" not in key for key in listed)
    missing = admin.tenants.post(f"{base}/0000000000000000/revoke")
    assert missing.status_code == 404
    assert "0000000000000000" in missing.json()["detail"]


def test_required_signed_links_refuse_secret(
    gateway: httpx.Client, signed_tenant: SignedTenant, admin: Admin
) -> None:
    raw = f"{LINK_PATH}?{signed_tenant.secret}&004711"
    page = gateway.get(raw)
    assert page.status_code == 200
    admin.update_tenant(signed_tenant.id, signed_links_required=True)

    deadline = time.monotonic() + 5
    while gateway.get(raw).status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.get(raw).status_code == 404
    assert gateway.get(signed_query(signed_tenant)).status_code == 200
    # A form opened through the raw link before the switch is refused too.
    assert post_form(gateway, form_token(page)).status_code == 404


def run_example(command: list[str], tenant: SignedTenant, base_url: str) -> str:
    result = subprocess.run(
        [*command, base_url, tenant.key_id, tenant.id, "004711", "Haus B", "IT"],
        env={**os.environ, "SIGNING_KEY": tenant.key},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("language", ["python", "javascript"])
def test_examples_open_form(
    stack: Stack, signed_tenant: SignedTenant, language: str
) -> None:
    if language == "python":
        command = [sys.executable, str(ROOT / "examples" / "sign_link.py")]
    else:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed, so examples/sign_link.js cannot run")
        command = [node, str(ROOT / "examples" / "sign_link.js")]
    url = run_example(command, signed_tenant, stack.url("gateway"))
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200
    assert "Jörg Bäcker" in page.text
    assert 'value="Haus B" readonly' in page.text


def test_cli_issues_key_and_builds_link(
    stack: Stack,
    signed_tenant: SignedTenant,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LINKDESK_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("LINKDESK_TENANT_URL", stack.url("tenant"))
    monkeypatch.setenv("LINKDESK_GATEWAY_URL", stack.url("gateway"))

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert cli.main(list(argv)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    issued: dict[str, Any] = json.loads(
        run("signing-key", "issue", signed_tenant.id, "--json")
    )
    table = run("signing-key", "list", signed_tenant.id)
    assert issued["key_id"] in table
    assert issued["key"] not in table
    assert "active" in table

    monkeypatch.setenv("LINKDESK_SIGNING_KEY", issued["key"])
    url = run("signed-link", issued["key_id"], signed_tenant.id, "004711").strip()
    assert url.startswith(f"{stack.url('gateway')}{LINK_PATH}?sig=v1.")
    assert httpx.get(url, timeout=10).status_code == 200

    run("signing-key", "revoke", signed_tenant.id, issued["key_id"])
    assert httpx.get(url, timeout=10).status_code == 404
