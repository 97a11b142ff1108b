"""The tenant service's admin API: tenants, the intake switch, link secrets
(issue, rotate, revoke) and the audit trail, against the running stack."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import httpx
import pytest

from linkdesk.processes import Stack
from tests.helpers import Admin, TenantFixture, open_link

ADMIN_NAME = "tests"
"""Name of the admin token that conftest configures."""

INVALIDATION_BOUND = 1.0
"""Seconds within which a change must reach the gateway's cache."""


def status_within(
    gateway: httpx.Client, query: str, expected: int, bound: float = INVALIDATION_BOUND
) -> int:
    """Open the link until its status is `expected` or `bound` seconds pass;
    return the last status."""
    deadline = time.monotonic() + bound
    status = open_link(gateway, query).status_code
    while status != expected and time.monotonic() < deadline:
        time.sleep(0.02)
        status = open_link(gateway, query).status_code
    return status


def link_query(secret: str, number: str = "004711") -> str:
    return TenantFixture(
        id="", secret=secret, secret_id="", personnel_number=number
    ).link_query()


def audit(admin: Admin, tenant_id: str, **params: Any) -> list[dict[str, Any]]:
    response = admin.tenants.get(f"/admin/tenants/{tenant_id}/audit", params=params)
    assert response.status_code == 200, response.text
    return list(response.json())


def parse_time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


# Tenants


def test_tenant_create_list_show_update(admin: Admin) -> None:
    name = f"Pflegeheim {uuid.uuid4().hex[:6]}"
    created = admin.tenants.post(
        "/admin/tenants",
        json={"name": f"  {name} ", "language": "fr", "categories": ["IT", " Küche "]},
    )
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert tenant["name"] == name
    assert tenant["language"] == "fr"
    assert tenant["categories"] == ["IT", "Küche"]
    assert tenant["intake_enabled"] is False

    listed = admin.tenants.get("/admin/tenants").json()
    assert tenant["id"] in [t["id"] for t in listed]
    shown = admin.tenants.get(f"/admin/tenants/{tenant['id']}").json()
    assert shown == tenant

    updated = admin.tenants.patch(
        f"/admin/tenants/{tenant['id']}",
        json={"name": "Neuer Name", "categories": ["Gebäude"]},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["name"] == "Neuer Name"
    assert updated.json()["categories"] == ["Gebäude"]
    assert updated.json()["language"] == "fr"


def test_tenant_blank_name_rejected(admin: Admin) -> None:
    response = admin.tenants.post("/admin/tenants", json={"name": "   "})
    assert response.status_code == 400
    assert "name" in response.json()["detail"]
    assert "'   '" in response.json()["detail"]


def test_tenant_repeated_category_rejected(admin: Admin) -> None:
    response = admin.tenants.post(
        "/admin/tenants", json={"name": "Heim", "categories": ["IT", "IT "]}
    )
    assert response.status_code == 400
    assert "categories" in response.json()["detail"]
    assert "'IT'" in response.json()["detail"]


def test_tenant_invalid_language_names_field(admin: Admin) -> None:
    response = admin.tenants.post(
        "/admin/tenants", json={"name": "Heim", "language": "es"}
    )
    assert response.status_code == 400
    assert "language" in response.text


def test_unknown_tenant_404(admin: Admin) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", f"/admin/tenants/{missing}"),
        ("PATCH", f"/admin/tenants/{missing}"),
        ("POST", f"/admin/tenants/{missing}/secrets"),
        ("POST", f"/admin/tenants/{missing}/secrets/rotate"),
        ("GET", f"/admin/tenants/{missing}/secrets"),
        ("POST", f"/admin/tenants/{missing}/intake/enable"),
        ("GET", f"/admin/tenants/{missing}/audit"),
    ]:
        body = {"name": "x"} if method == "PATCH" else None
        response = admin.tenants.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert str(missing) in response.json()["detail"]


def test_admin_calls_need_token(stack: Stack) -> None:
    for service, path in [
        ("tenant", "/admin/tenants"),
        ("personnel", f"/admin/tenants/{uuid.uuid4()}/people"),
    ]:
        missing = httpx.get(stack.url(service) + path)
        wrong = httpx.get(
            stack.url(service) + path,
            headers={"Authorization": "Bearer not-the-token-0123456789"},
        )
        assert missing.status_code == 401
        assert wrong.status_code == 401
        assert "bearer token" in missing.json()["detail"]


def test_openapi_lists_admin_paths(stack: Stack) -> None:
    tenant = httpx.get(stack.url("tenant") + "/schema/openapi.json")
    personnel = httpx.get(stack.url("personnel") + "/schema/openapi.json")
    assert tenant.status_code == 200
    assert personnel.status_code == 200
    tenant_paths = tenant.json()["paths"]
    personnel_paths = personnel.json()["paths"]
    assert "/admin/tenants/{tenant_id}/secrets/rotate" in tenant_paths
    assert "/admin/tenants/{tenant_id}/audit" in tenant_paths
    assert "/admin/tenants/{tenant_id}/intake/disable" in tenant_paths
    assert "/admin/tenants/{tenant_id}/people/import" in personnel_paths
    assert "/admin/tenants/{tenant_id}/person" in personnel_paths


# The intake switch


def test_intake_endpoints_switch_links(
    admin: Admin, tenant: TenantFixture, gateway: httpx.Client
) -> None:
    assert open_link(gateway, tenant.link_query()).status_code == 200

    off = admin.tenants.post(f"/admin/tenants/{tenant.id}/intake/disable")
    assert off.status_code == 200, off.text
    assert off.json()["intake_enabled"] is False
    assert status_within(gateway, tenant.link_query(), 404) == 404

    on = admin.tenants.post(f"/admin/tenants/{tenant.id}/intake/enable")
    assert on.status_code == 200, on.text
    assert on.json()["intake_enabled"] is True
    assert open_link(gateway, tenant.link_query()).status_code == 200


# Secrets


def test_secret_list_never_shows_secret(admin: Admin, tenant: TenantFixture) -> None:
    response = admin.tenants.get(f"/admin/tenants/{tenant.id}/secrets")
    assert response.status_code == 200
    [info] = response.json()
    assert info["id"] == tenant.secret_id
    assert set(info) == {
        "id",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    }
    assert tenant.secret not in response.text


def test_last_used_at_set_by_link(
    admin: Admin, tenant: TenantFixture, gateway: httpx.Client
) -> None:
    assert open_link(gateway, tenant.link_query()).status_code == 200
    [info] = admin.tenants.get(f"/admin/tenants/{tenant.id}/secrets").json()
    assert info["last_used_at"] is not None


def test_rotate_with_grace_keeps_old_secret(
    admin: Admin, tenant: TenantFixture, gateway: httpx.Client
) -> None:
    before = dt.datetime.now(dt.UTC)
    response = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": 3600}
    )
    assert response.status_code == 201, response.text
    rotated = response.json()
    new_secret = rotated["secret"]
    assert new_secret != tenant.secret
    [expiring] = rotated["expiring"]
    assert expiring["id"] == tenant.secret_id
    expires_at = parse_time(expiring["expires_at"])
    assert before + dt.timedelta(seconds=3599) <= expires_at
    assert expires_at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3600)

    assert open_link(gateway, tenant.link_query()).status_code == 200
    assert open_link(gateway, link_query(new_secret)).status_code == 200

    secrets = admin.tenants.get(f"/admin/tenants/{tenant.id}/secrets").json()
    by_id = {info["id"]: info for info in secrets}
    assert by_id[rotated["info"]["id"]]["expires_at"] is None
    assert by_id[tenant.secret_id]["expires_at"] == expiring["expires_at"]


def test_rotate_without_grace_ends_old_secret(
    admin: Admin, tenant: TenantFixture, gateway: httpx.Client
) -> None:
    assert open_link(gateway, tenant.link_query()).status_code == 200
    response = admin.tenants.post(f"/admin/tenants/{tenant.id}/secrets/rotate")
    assert response.status_code == 201, response.text
    new_secret = response.json()["secret"]

    assert status_within(gateway, tenant.link_query(), 404) == 404
    assert open_link(gateway, link_query(new_secret)).status_code == 200


def test_rotate_never_extends_expiry(admin: Admin, tenant: TenantFixture) -> None:
    first = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": 600}
    ).json()
    second = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": 7200}
    ).json()
    by_id = {info["id"]: info for info in second["expiring"]}
    # The original secret keeps its 600 s expiry; the first rotation's secret
    # gets the new 7200 s one.
    assert by_id[tenant.secret_id]["expires_at"] == first["expiring"][0]["expires_at"]
    first_expiry = parse_time(first["expiring"][0]["expires_at"])
    assert parse_time(by_id[first["info"]["id"]]["expires_at"]) > first_expiry


def test_rotate_skips_revoked_secret(admin: Admin, tenant: TenantFixture) -> None:
    admin.revoke_secret(tenant.id, tenant.secret_id)
    rotated = admin.tenants.post(f"/admin/tenants/{tenant.id}/secrets/rotate").json()
    assert rotated["expiring"] == []


@pytest.mark.parametrize("grace", [-1, 2_592_001, "an hour"])
def test_rotate_invalid_grace_rejected(
    admin: Admin, tenant: TenantFixture, grace: object
) -> None:
    response = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/rotate", json={"grace_seconds": grace}
    )
    assert response.status_code == 400
    assert "grace_seconds" in response.text
    secrets = admin.tenants.get(f"/admin/tenants/{tenant.id}/secrets").json()
    assert len(secrets) == 1


def test_revoke_is_idempotent(admin: Admin, tenant: TenantFixture) -> None:
    path = f"/admin/tenants/{tenant.id}/secrets/{tenant.secret_id}/revoke"
    first = admin.tenants.post(path)
    second = admin.tenants.post(path)
    assert first.status_code == 200
    assert second.status_code == 200
    assert first.json()["revoked_at"] is not None
    assert second.json()["revoked_at"] == first.json()["revoked_at"]
    actions = [entry["action"] for entry in audit(admin, tenant.id)]
    assert actions.count("secret_revoked") == 1


def test_revoke_unknown_secret_404(admin: Admin, tenant: TenantFixture) -> None:
    missing = uuid.uuid4()
    response = admin.tenants.post(
        f"/admin/tenants/{tenant.id}/secrets/{missing}/revoke"
    )
    assert response.status_code == 404
    assert str(missing) in response.json()["detail"]


# Audit trail


def test_audit_records_each_change(admin: Admin) -> None:
    tenant = admin.create_tenant(intake_enabled=False)
    tenant_id = tenant["id"]
    admin.update_tenant(tenant_id, name="Umbenannt", language="it")
    admin.update_tenant(tenant_id, name="Umbenannt")  # no change, no entry
    assert admin.tenants.post(f"/admin/tenants/{tenant_id}/intake/enable").is_success
    issued = admin.issue_secret(tenant_id)
    rotated = admin.tenants.post(
        f"/admin/tenants/{tenant_id}/secrets/rotate", json={"grace_seconds": 60}
    ).json()
    admin.revoke_secret(tenant_id, rotated["info"]["id"])
    admin.update_tenant(tenant_id, intake_enabled=False)

    entries = audit(admin, tenant_id)
    assert [entry["action"] for entry in entries] == [
        "intake_disabled",
        "secret_revoked",
        "secret_rotated",
        "secret_issued",
        "intake_enabled",
        "tenant_updated",
        "tenant_created",
    ]
    assert {entry["admin"] for entry in entries} == {ADMIN_NAME}
    assert all(entry["tenant_id"] == tenant_id for entry in entries)
    by_action = {entry["action"]: entry["details"] for entry in entries}
    assert by_action["tenant_updated"] == {
        "name": {"old": tenant["name"], "new": "Umbenannt"},
        "language": {"old": "de", "new": "it"},
    }
    assert by_action["secret_issued"] == {"secret_id": issued["info"]["id"]}
    assert by_action["secret_rotated"]["grace_seconds"] == 60
    assert (
        by_action["secret_rotated"]["expiring"][0]["secret_id"]
        == (issued["info"]["id"])
    )
    assert by_action["secret_revoked"] == {"secret_id": rotated["info"]["id"]}

    text = admin.tenants.get(f"/admin/tenants/{tenant_id}/audit").text
    assert issued["secret"] not in text
    assert rotated["secret"] not in text


def test_audit_pages_newest_first(admin: Admin) -> None:
    tenant_id = admin.create_tenant()["id"]
    for _ in range(3):
        admin.issue_secret(tenant_id)
    first_page = audit(admin, tenant_id, limit=2)
    assert len(first_page) == 2
    rest = audit(admin, tenant_id, before=first_page[-1]["id"])
    assert [e["action"] for e in rest] == ["secret_issued", "tenant_created"]
    ids = [e["id"] for e in first_page + rest]
    assert ids == sorted(ids, reverse=True)
