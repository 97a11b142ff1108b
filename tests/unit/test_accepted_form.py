"""How a gateway replica distinguishes a repeated post from a changed one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from services.gateway.accepted_form import (
    AcceptedForms,
    Unreadable,
    accepted_form_of,
    values_digest,
)
from shared import messages, reference

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


async def test_remembered_form_found_without_request(nc: Client) -> None:
    forms = AcceptedForms(nc, timeout=1.0)
    forms.remember("s-1", "T-7KQ2X-M9R4P", VALUES)

    found = await forms.find(tenant_id="t", submission_id="s-1", request_id="r")

    assert found is not None
    assert found.reference == "T-7KQ2X-M9R4P"
    assert not found.differs_from({**VALUES, "urgency": "normal"})
    assert found.differs_from({**VALUES, "subject": "Scanner"})


async def test_oldest_form_forgotten_beyond_capacity(nc: Client) -> None:
    # A forgotten form is requested from the ticket service, which either does
    # not run in this test session or has no ticket with these ids.
    forms = AcceptedForms(nc, timeout=1.0, capacity=2)
    for number in range(3):
        forms.remember(f"s-{number}", f"T-{number}", VALUES)

    forgotten = await forms.find(tenant_id="t", submission_id="s-0", request_id="r")
    remembered = await forms.find(tenant_id="t", submission_id="s-2", request_id="r")

    assert forgotten is None
    assert remembered is not None
    assert remembered.reference == "T-2"


def stored(submission_id: uuid.UUID, **changes: str) -> messages.StoredSubmission:
    fields = {
        "reference": reference.for_submission(submission_id),
        "category": "IT",
        "subject": "Drucker",
        "description": "Kein Papier",
        "location": "",
        "urgency": "normal",
        **changes,
    }
    return messages.StoredSubmission(**fields)


def test_stored_ticket_compared_by_values() -> None:
    submission_id = uuid.uuid4()

    form = accepted_form_of(stored(submission_id), str(submission_id))

    assert form.reference == reference.for_submission(submission_id)
    assert not form.differs_from(VALUES)
    assert form.differs_from({**VALUES, "description": "Kein Toner"})


def test_reference_of_other_form_unreadable() -> None:
    submission_id = uuid.uuid4()
    other = stored(submission_id, reference=reference.for_submission(uuid.uuid4()))

    with pytest.raises(Unreadable) as raised:
        accepted_form_of(other, str(submission_id))

    assert raised.value.reason == "reference_mismatch"


def test_invalid_submission_id_unreadable() -> None:
    with pytest.raises(Unreadable) as raised:
        accepted_form_of(stored(uuid.uuid4()), "not-a-uuid")

    assert raised.value.reason == "submission_id_invalid"
