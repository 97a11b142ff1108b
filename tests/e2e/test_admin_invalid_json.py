"""Admin APIs reject a JSON body that does not decode with a 400 that states
what is wrong and names the field, and they store nothing. The services'
NATS request handlers name the field in their error reply too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER

from shared import subjects
from tests.helpers import Admin, TenantFixture, form_token, open_link, post_form

JSON = {"Content-Type": "application/json"}


def rejected(response: httpx.Response) -> str:
    """Return the `detail` of a 400 for an undecodable body."""
    assert response.status_code == 400, response.text
    detail = str(response.json()["detail"])
    assert detail.startswith("invalid JSON in the request body: "), detail
    assert "truncated" not in detail
    return detail


def person_stored(admin: Admin, tenant_id: str, number: str) -> bool:
    response = admin.personnel.get(
        f"/admin/tenants/{tenant_id}/person", params={"number": number}
    )
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


# Personnel


def test_person_with_lone_surrogate_not_stored(
    admin: Admin, tenant: TenantFixture
) -> None:
    number = f"S{uuid.uuid4().hex[:8]}"
    body = f'{{"personnel_number": "{number}", "name": "J\\ud800rg"}}'

    response = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people", content=body.encode(), headers=JSON
    )

    detail = rejected(response)
    assert "the string at $.name" in detail
    assert "\\ud800" in detail
    assert "surrogate pair" in detail
    assert response.json()["extra"][0]["key"] == "$.name"
    assert not person_stored(admin, tenant.id, number)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (b"J\\udc00rg", "the string at $.name"),
        (b"J\xf6rg", "the string at $.name contains byte 0xF6"),
        (b"J\x01rg", "the string at $.name contains an unescaped control"),
    ],
    ids=["lone-low-surrogate", "latin-1-byte", "raw-control-character"],
)
def test_person_with_bad_name_not_stored(
    admin: Admin, tenant: TenantFixture, name: bytes, expected: str
) -> None:
    number = f"S{uuid.uuid4().hex[:8]}"
    body = b'{"personnel_number": "' + number.encode() + b'", "name": "' + name + b'"}'

    response = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people", content=body, headers=JSON
    )

    assert expected in rejected(response)
    assert not person_stored(admin, tenant.id, number)


@pytest.mark.parametrize(
    ("tail", "expected"),
    [
        (b'", "name": "J', "ends inside the string at $.name"),
        (b'", "name": ', "ends early"),
        (b'", "name": "Jo"} {"x": 1}', "more data follows"),
        (b'", "name": "Jo",}', "line 1, column"),
    ],
    ids=["cut-in-string", "cut-after-key", "trailing-data", "trailing-comma"],
)
def test_broken_person_body_not_stored(
    admin: Admin, tenant: TenantFixture, tail: bytes, expected: str
) -> None:
    number = f"S{uuid.uuid4().hex[:8]}"
    body = b'{"personnel_number": "' + number.encode() + tail

    response = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people", content=body, headers=JSON
    )

    assert expected in rejected(response)
    assert not person_stored(admin, tenant.id, number)


def test_form_body_for_json_named(admin: Admin, tenant: TenantFixture) -> None:
    response = admin.personnel.post(
        f"/admin/tenants/{tenant.id}/people",
        data={"personnel_number": "S1", "name": "Jo"},
    )

    detail = rejected(response)
    assert "not JSON" in detail
    assert "Content-Type: application/json" in detail


def test_person_update_with_surrogate_changes_nothing(
    admin: Admin, tenant: TenantFixture
) -> None:
    path = f"/admin/tenants/{tenant.id}/people/{tenant.personnel_number}"
    before = admin.personnel.get(path).json()

    response = admin.personnel.patch(
        path, content=b'{"active": false, "name": "\\ud83d"}', headers=JSON
    )

    assert "the string at $.name" in rejected(response)
    assert admin.personnel.get(path).json() == before


def test_bad_json_without_token_gets_401(admin: Admin, tenant: TenantFixture) -> None:
    with httpx.Client(base_url=str(admin.personnel.base_url)) as anonymous:
        response = anonymous.post(
            f"/admin/tenants/{tenant.id}/people",
            content=b'{"name": "\\ud800"}',
            headers=JSON,
        )

    assert response.status_code == 401


# Tenants


def test_tenant_with_surrogate_category_not_created(admin: Admin) -> None:
    name = f"Heim {uuid.uuid4().hex[:8]}"
    body = f'{{"name": "{name}", "categories": ["IT", "Geb\\udce4ude"]}}'

    response = admin.tenants.post("/admin/tenants", content=body.encode(), headers=JSON)

    detail = rejected(response)
    assert "the string at $.categories[1]" in detail
    assert "low surrogate" in detail
    listed = admin.tenants.get("/admin/tenants").json()
    assert name not in [tenant["name"] for tenant in listed]


def test_tenant_update_bad_bytes_unchanged(admin: Admin, tenant: TenantFixture) -> None:
    path = f"/admin/tenants/{tenant.id}"
    before = admin.tenants.get(path).json()
    audit_before = admin.tenants.get(f"{path}/audit").json()

    response = admin.tenants.patch(
        path,
        content=b'{"intake_enabled": false, "frame_ancestors": ["https://b\xfcro.ch"]}',
        headers=JSON,
    )

    detail = rejected(response)
    assert "the string at $.frame_ancestors[0] contains byte 0xFC" in detail
    assert "UTF-8" in detail
    assert admin.tenants.get(path).json() == before
    assert admin.tenants.get(f"{path}/audit").json() == audit_before


def test_tenant_update_in_utf16_changes_nothing(
    admin: Admin, tenant: TenantFixture
) -> None:
    path = f"/admin/tenants/{tenant.id}"
    before = admin.tenants.get(path).json()

    response = admin.tenants.patch(
        path, content='{"name": "Neu"}'.encode("utf-16"), headers=JSON
    )

    assert "UTF-16" in rejected(response)
    assert admin.tenants.get(path).json() == before


def test_deeply_nested_body_gets_400(admin: Admin) -> None:
    response = admin.tenants.post(
        "/admin/tenants", content=b'{"name": ' + b"[" * 50_000, headers=JSON
    )

    assert "too deeply" in rejected(response)


# Tickets


def test_status_change_with_surrogate_changes_nothing(
    gateway: httpx.Client, admin: Admin, tenant: TenantFixture
) -> None:
    answer = post_form(gateway, form_token(open_link(gateway, tenant.link_query())))
    assert answer.status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    path = f"/admin/tenants/{tenant.id}/tickets/{ticket['id']}"

    response = admin.tickets.post(
        f"{path}/status",
        content=b'{"status": "closed", "comment": "erledigt \\ud800"}',
        headers=JSON,
    )

    assert "the string at $.comment" in rejected(response)
    ticket_detail: dict[str, Any] = admin.tickets.get(path).json()
    assert ticket_detail["ticket"]["status"] == "new"
    assert len(ticket_detail["history"]) == 1


# NATS request handlers


async def test_resolve_request_with_surrogate_names_field(
    nc: Client, tenant: TenantFixture
) -> None:
    data = f'{{"tenant_id": "{tenant.id}", "personnel_number": "00\\ud800"}}'

    reply = await nc.request(subjects.PERSONNEL_RESOLVE, data.encode(), timeout=5)

    assert reply.headers is not None
    assert reply.headers[ERROR_CODE_HEADER] == "400"
    error = reply.headers[ERROR_HEADER]
    assert error.startswith("invalid ResolvePerson: ")
    assert "the string at $.personnel_number" in error
    assert "truncated" not in error


async def test_deeply_nested_request_gets_400(
    nc: Client, tenant: TenantFixture
) -> None:
    # msgspec skips the unknown field, but raises RecursionError while doing so.
    nested = b"[" * 5000 + b"]" * 5000
    data = f'{{"tenant_id": "{tenant.id}", "later": '.encode() + nested + b"}"

    reply = await nc.request(subjects.TENANT_GET, data, timeout=5)

    assert reply.headers is not None
    assert reply.headers[ERROR_CODE_HEADER] == "400"
    error = reply.headers[ERROR_HEADER]
    assert error.startswith("invalid GetTenant: ")
    assert "too deeply" in error
