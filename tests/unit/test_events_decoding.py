"""The ticket consumer's decoding of submitted events, poison messages included."""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

import msgspec
import pytest

from services.ticket.consumer import InvalidSubmission, decode_submission
from shared import events, messages, subjects

TENANT = str(uuid.uuid4())
SUBJECT = subjects.ticket_submitted(TENANT)


def valid_event() -> dict[str, object]:
    submission_id = str(uuid.uuid4())
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    event = events.TicketSubmitted(
        id=submission_id,
        time=now,
        subject="T-1",
        data=events.TicketSubmittedData(
            submission_id=submission_id,
            reference="T-1",
            tenant_id=TENANT,
            personnel_number="004711",
            reporter_name="Jörg Bäcker",
            category="IT",
            subject="Drucker",
            description="Kein Papier",
            submitted_at=now,
        ),
    )
    decoded: dict[str, object] = msgspec.json.decode(messages.ENCODER.encode(event))
    return decoded


def test_valid_event_decodes() -> None:
    event = decode_submission(SUBJECT, msgspec.json.encode(valid_event()))

    assert event.data.tenant_id == TENANT


def test_latin1_bytes_are_undecodable() -> None:
    with pytest.raises(InvalidSubmission, match=r"^undecodable message: .*UTF-8"):
        decode_submission(SUBJECT, b'{"subject":"K\xfcche"}')


def test_wrong_field_type_names_path() -> None:
    event = valid_event()
    data = event["data"]
    assert isinstance(data, dict)
    data["category"] = 42

    with pytest.raises(
        InvalidSubmission, match=r"Expected `str`, got `int` - at `\$.data.category`"
    ):
        decode_submission(SUBJECT, msgspec.json.encode(event))


def test_lone_surrogate_names_field() -> None:
    data = msgspec.json.encode(valid_event()).replace(b'"Drucker"', b'"Dr\\ud800"')

    with pytest.raises(InvalidSubmission) as caught:
        decode_submission(SUBJECT, data)

    message = str(caught.value)
    assert message.startswith("undecodable message: ")
    assert "the string at $.data.subject" in message
    assert "truncated" not in message


def test_truncated_json_is_undecodable() -> None:
    with pytest.raises(InvalidSubmission, match=r"^undecodable message"):
        decode_submission(SUBJECT, msgspec.json.encode(valid_event())[:50])


def test_deep_unknown_field_is_undecodable() -> None:
    # msgspec skips unknown fields but raises RecursionError for deep nesting.
    data = msgspec.json.encode(valid_event()).replace(
        b"{", b'{"later":' + b"[" * 5000 + b"]" * 5000 + b",", 1
    )

    with pytest.raises(InvalidSubmission) as caught:
        decode_submission(SUBJECT, data)

    assert "too deeply" in str(caught.value)


@pytest.mark.parametrize("field", ["submission_id", "tenant_id"])
def test_id_that_is_no_uuid_is_invalid(field: str) -> None:
    event = valid_event()
    data = event["data"]
    assert isinstance(data, dict)
    data[field] = "42"

    with pytest.raises(InvalidSubmission, match=f"invalid data.{field} '42'"):
        decode_submission(SUBJECT, msgspec.json.encode(event))


def test_subject_of_other_tenant_is_invalid() -> None:
    other = subjects.ticket_submitted(str(uuid.uuid4()))

    with pytest.raises(InvalidSubmission, match="does not match the subject"):
        decode_submission(other, msgspec.json.encode(valid_event()))


def test_submitted_at_outside_utc_range_is_invalid() -> None:
    event = valid_event()
    data = event["data"]
    assert isinstance(data, dict)
    data["submitted_at"] = "0001-01-01T00:00:00+01:00"

    with pytest.raises(InvalidSubmission, match=r"invalid data\.submitted_at"):
        decode_submission(SUBJECT, msgspec.json.encode(event))


def test_submitted_at_outside_number_zone_is_invalid() -> None:
    """A valid UTC time whose year in the number time zone is 10000 has no
    ticket number, so the message is parked rather than retried."""
    event = valid_event()
    data = event["data"]
    assert isinstance(data, dict)
    data["submitted_at"] = "9999-12-31T23:30:00Z"
    encoded = msgspec.json.encode(event)

    assert decode_submission(SUBJECT, encoded).data.submitted_at.year == 9999
    with pytest.raises(InvalidSubmission, match=r"range of times in Europe/Zurich"):
        decode_submission(SUBJECT, encoded, zoneinfo.ZoneInfo("Europe/Zurich"))


@pytest.mark.parametrize("path", [("data", "submitted_at"), ("time",)])
def test_time_without_offset_is_invalid(path: tuple[str, ...]) -> None:
    """A naive time would be read in each reader's own zone, so it is rejected
    and the message parked, naming the field."""
    event = valid_event()
    holder: dict[str, object] = event
    for key in path[:-1]:
        inner = holder[key]
        assert isinstance(inner, dict)
        holder = inner
    holder[path[-1]] = "2026-12-31T23:30:00"

    with pytest.raises(
        InvalidSubmission, match=r"timezone.* - at `\$\." + r"\.".join(path) + "`"
    ):
        decode_submission(SUBJECT, msgspec.json.encode(event))
