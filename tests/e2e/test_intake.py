"""The main job end to end: link, form, JetStream, PostgreSQL."""

from __future__ import annotations

import httpx

from tests.helpers import (
    VALID_FIELDS,
    Admin,
    TenantFixture,
    form_token,
    open_link,
    post_form,
)


def test_link_form_and_ticket_stored(
    gateway: httpx.Client, admin: Admin, tenant: TenantFixture
) -> None:
    """A valid link opens the form; posting it stores one attributed ticket."""
    page = open_link(gateway, tenant.link_query())
    assert page.status_code == 200
    assert "Jörg Bäcker" in page.text

    answer = post_form(gateway, form_token(page))
    assert answer.status_code == 303
    location = answer.headers["location"]
    assert tenant.secret not in location
    assert tenant.personnel_number not in location

    confirmation = gateway.get(location)
    assert confirmation.status_code == 200
    reference = location.split("/")[-1].split("?")[0]
    assert reference in confirmation.text

    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    assert ticket["tenant_id"] == tenant.id
    assert ticket["personnel_number"] == "004711"
    assert ticket["reference"] == reference
    for field, value in VALID_FIELDS.items():
        assert ticket[field] == value
