"""How a gateway replica tells a repeated post from a changed one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from services.gateway.accepted_form import AcceptedForms, values_digest

VALUES = {
    "category": "IT",
    "subject": "Drucker",
    "description": "Kein Papier",
    "location": "",
    "urgency": "",
}


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield client
    finally:
        await client.close()


def test_empty_urgency_is_the_stored_default() -> None:
    assert values_digest(VALUES) == values_digest({**VALUES, "urgency": "normal"})


def test_missing_field_is_empty() -> None:
    without_location = {k: v for k, v in VALUES.items() if k != "location"}

    assert values_digest(without_location) == values_digest(VALUES)


def test_fields_outside_the_ticket_ignored() -> None:
    posted = {**VALUES, "form_token": "x", "name": "y"}

    assert values_digest(posted) == values_digest(VALUES)


@pytest.mark.parametrize("field", ["category", "subject", "description", "location"])
def test_any_changed_field_differs(field: str) -> None:
    assert values_digest({**VALUES, field: "anders"}) != values_digest(VALUES)


def test_values_do_not_run_into_each_other() -> None:
    shifted = {**VALUES, "subject": "Drucker Kein", "description": "Papier"}

    assert values_digest(shifted) != values_digest(VALUES)


async def test_remembered_form_found_without_asking(nc: Client) -> None:
    forms = AcceptedForms(nc, timeout=1.0)
    forms.remember("s-1", "T-7KQ2X-M9R4P", VALUES)

    found = await forms.find(tenant_id="t", submission_id="s-1", request_id="r")

    assert found is not None
    assert found.reference == "T-7KQ2X-M9R4P"
    assert not found.differs_from({**VALUES, "urgency": "normal"})
    assert found.differs_from({**VALUES, "subject": "Scanner"})


async def test_oldest_form_forgotten_beyond_capacity(nc: Client) -> None:
    # A forgotten form is asked for in the ticket service, which either does
    # not run in this test session or does not know these ids.
    forms = AcceptedForms(nc, timeout=1.0, capacity=2)
    for number in range(3):
        forms.remember(f"s-{number}", f"T-{number}", VALUES)

    forgotten = await forms.find(tenant_id="t", submission_id="s-0", request_id="r")
    kept = await forms.find(tenant_id="t", submission_id="s-2", request_id="r")

    assert forgotten is None
    assert kept is not None
    assert kept.reference == "T-2"
