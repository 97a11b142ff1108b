"""Admin APIs answer invalid values with 400 naming the problem, never 500."""

from __future__ import annotations

from tests.helpers import Admin, TenantFixture


def test_tenant_name_with_nul_gets_400(admin: Admin) -> None:
    answer = admin.tenants.post("/admin/tenants", json={"name": "Heim\x00A"})

    assert answer.status_code == 400
    assert "name" in answer.json()["detail"]
    assert "control character" in answer.json()["detail"]


def test_category_with_nul_gets_400(admin: Admin, tenant: TenantFixture) -> None:
    answer = admin.tenants.patch(
        f"/admin/tenants/{tenant.id}", json={"categories": ["IT", "Ge\x00bäude"]}
    )

    assert answer.status_code == 400
    assert "categories" in answer.json()["detail"]


def test_person_name_with_nul_gets_400(admin: Admin, tenant: TenantFixture) -> None:
    answer = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people",
        json={"personnel_number": "008800", "name": "Anna\x00Muster"},
    )

    assert answer.status_code == 400
    assert "name" in answer.json()["detail"]


def test_number_beyond_int64_gets_400(admin: Admin, tenant: TenantFixture) -> None:
    answer = admin.tickets.get(
        f"/admin/tenants/{tenant.id}/tickets",
        params={"before": "99999999999999999999"},
    )

    assert answer.status_code == 400


def test_openapi_served_without_third_party_viewer(admin: Admin) -> None:
    document = admin.tenants.get("/schema/openapi.json")
    viewer = admin.tenants.get("/schema/swagger")

    assert document.status_code == 200
    assert "/admin/tenants" in document.json()["paths"]
    assert viewer.status_code == 404
