"""Tenant isolation: no admin call made with one tenant's id reads or changes
another tenant's data, and the same personnel number in two tenants opens
two different people's forms."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import Admin, TenantFixture, open_link


@pytest.fixture
def tenant_a(admin: Admin) -> TenantFixture:
    return admin.create_tenant_with_person("004711", "Jörg Bäcker")


@pytest.fixture
def tenant_b(admin: Admin) -> TenantFixture:
    return admin.create_tenant_with_person("004711", "Anna Muster")


def person_of(admin: Admin, tenant_id: str, number: str) -> dict[str, Any]:
    response = admin.personnel.get(
        f"/admin/tenants/{tenant_id}/person", params={"number": number}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_same_number_opens_each_tenants_person(
    gateway: httpx.Client, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    page_a = open_link(gateway, tenant_a.link_query())
    page_b = open_link(gateway, tenant_b.link_query())
    assert page_a.status_code == 200
    assert page_b.status_code == 200
    assert "Jörg Bäcker" in page_a.text
    assert "Anna Muster" not in page_a.text
    assert "Anna Muster" in page_b.text
    assert "Jörg Bäcker" not in page_b.text


def test_secret_of_other_tenant_not_revoked(
    admin: Admin,
    gateway: httpx.Client,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    response = admin.tenants.post(
        f"/admin/tenants/{tenant_b.id}/secrets/{tenant_a.secret_id}/revoke"
    )
    assert response.status_code == 404
    [secret_a] = admin.tenants.get(f"/admin/tenants/{tenant_a.id}/secrets").json()
    assert secret_a["revoked_at"] is None
    assert open_link(gateway, tenant_a.link_query()).status_code == 200


def test_secret_lists_and_audit_scoped(
    admin: Admin, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    secrets_b = admin.tenants.get(f"/admin/tenants/{tenant_b.id}/secrets").json()
    assert [info["id"] for info in secrets_b] == [tenant_b.secret_id]
    audit_b = admin.tenants.get(f"/admin/tenants/{tenant_b.id}/audit").json()
    assert {entry["tenant_id"] for entry in audit_b} == {tenant_b.id}
    assert tenant_a.secret_id not in str(audit_b)


def test_rotation_leaves_other_tenant(
    admin: Admin,
    gateway: httpx.Client,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    rotated = admin.tenants.post(f"/admin/tenants/{tenant_b.id}/secrets/rotate")
    assert rotated.status_code == 201
    assert [info["id"] for info in rotated.json()["expiring"]] == [tenant_b.secret_id]
    [secret_a] = admin.tenants.get(f"/admin/tenants/{tenant_a.id}/secrets").json()
    assert secret_a["expires_at"] is None
    assert open_link(gateway, tenant_a.link_query()).status_code == 200


def test_person_of_other_tenant_not_found(
    admin: Admin, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    admin.add_person(tenant_a.id, "00/47", "Nur in A")
    person_path = f"/admin/tenants/{tenant_b.id}/person"
    number = {"number": "00/47"}
    for response in (
        admin.personnel.get(person_path, params=number),
        admin.personnel.patch(person_path, params=number, json={"name": "Von B"}),
        admin.personnel.post(f"{person_path}/deactivate", params=number),
    ):
        assert response.status_code == 404, response.text
        assert tenant_b.id in response.json()["detail"]
    person_a = person_of(admin, tenant_a.id, "00/47")
    assert person_a["name"] == "Nur in A"
    assert person_a["active"] is True


def test_update_same_number_touches_own_tenant(
    admin: Admin,
    gateway: httpx.Client,
    tenant_a: TenantFixture,
    tenant_b: TenantFixture,
) -> None:
    off = admin.personnel.post(f"/admin/tenants/{tenant_b.id}/people/004711/deactivate")
    assert off.status_code == 200
    assert off.json()["tenant_id"] == tenant_b.id
    assert person_of(admin, tenant_a.id, "004711")["active"] is True
    assert open_link(gateway, tenant_a.link_query()).status_code == 200


def test_import_leaves_other_tenant(
    admin: Admin, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    admin.add_person(tenant_a.id, "004712", "Zweite Person A")
    before_a = admin.personnel.get(f"/admin/tenants/{tenant_a.id}/people").json()

    response = admin.personnel.post(
        f"/admin/tenants/{tenant_b.id}/people/import",
        params={"deactivate_missing": "true"},
        content=b"Personalnummer;Name\n004712;Neu in B\n",
        headers={"Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["added"] == ["004712"]
    assert response.json()["deactivated"] == ["004711"]

    after_a = admin.personnel.get(f"/admin/tenants/{tenant_a.id}/people").json()
    assert after_a == before_a
    people_b = admin.personnel.get(f"/admin/tenants/{tenant_b.id}/people").json()
    assert {p["tenant_id"] for p in people_b} == {tenant_b.id}


def test_list_shows_own_tenant_only(
    admin: Admin, tenant_a: TenantFixture, tenant_b: TenantFixture
) -> None:
    people_a = admin.personnel.get(
        f"/admin/tenants/{tenant_a.id}/people", params={"q": "004711"}
    ).json()
    assert [(p["tenant_id"], p["name"]) for p in people_a] == [
        (tenant_a.id, "Jörg Bäcker")
    ]
