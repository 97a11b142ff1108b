"""Unit tests for the field validation and event building in
`services.gateway.submission`."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from services.gateway.form_token import FormContext
from services.gateway.submission import (
    FIELDS,
    LIMITS,
    FieldError,
    build_event,
    validate,
)
from shared import messages, reference

CATEGORIES = ["IT", "Gebäude", "Sonstiges"]
VALID = {
    "category": "IT",
    "subject": "Drucker im 2. Stock",
    "description": "Der Drucker zieht kein Papier ein.",
    "location": "Haus B, Raum 204",
    "urgency": "normal",
}
SUBMISSION_ID = "0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11"
SUBMITTED_AT = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)


def errors_of(
    changes: dict[str, str],
    invalid_encoding: set[str] | None = None,
    categories: list[str] | None = None,
) -> dict[str, FieldError]:
    return validate(
        {**VALID, **changes},
        invalid_encoding or set(),
        CATEGORIES if categories is None else categories,
    )


def make_context(**changes: object) -> FormContext:
    fields: dict[str, object] = {
        "tenant_id": "6f1c2a4e-9a51-4c1b-8d0e-3f3a1d2b5c7e",
        "tenant_name": "Gemeinde Musterdorf",
        "personnel_number": "004711",
        "person_name": "Jörg Bäcker",
        "language": "fr",
        "categories": CATEGORIES,
        "submission_id": SUBMISSION_ID,
        "expires_at": 1_800_000_000,
    }
    fields.update(changes)
    return FormContext(**fields)  # type: ignore[arg-type]


# Validation


def test_valid_form_has_no_errors() -> None:
    assert errors_of({}) == {}


def test_optional_fields_may_be_missing() -> None:
    values = {key: VALID[key] for key in ("category", "subject", "description")}
    assert validate(values, set(), CATEGORIES) == {}


def test_empty_urgency_means_normal() -> None:
    assert errors_of({"urgency": ""}) == {}


@pytest.mark.parametrize("field", ["category", "subject", "description"])
def test_required_field_missing(field: str) -> None:
    values = {key: value for key, value in VALID.items() if key != field}
    assert validate(values, set(), CATEGORIES) == {field: FieldError("error_required")}


@pytest.mark.parametrize("field", ["category", "subject", "description"])
@pytest.mark.parametrize("blank", ["", " ", "\t\r\n", "\u00a0\u3000"])
def test_required_field_blank(field: str, blank: str) -> None:
    assert errors_of({field: blank}) == {field: FieldError("error_required")}


def test_blank_location_allowed() -> None:
    assert errors_of({"location": ""}) == {}
    assert errors_of({"location": "   "}) == {}


def test_all_errors_reported_at_once() -> None:
    errors = validate(
        {"location": "x" * (LIMITS["location"] + 1), "urgency": "sofort"},
        set(),
        CATEGORIES,
    )
    assert errors == {
        "category": FieldError("error_required"),
        "subject": FieldError("error_required"),
        "description": FieldError("error_required"),
        "location": FieldError("error_too_long", max=LIMITS["location"]),
        "urgency": FieldError("error_invalid_choice"),
    }


def test_limits_cover_text_fields() -> None:
    assert dict(LIMITS) == {
        "category": 80,
        "subject": 200,
        "description": 10_000,
        "location": 200,
    }


@pytest.mark.parametrize("field", ["subject", "description", "location"])
def test_length_at_limit_accepted(field: str) -> None:
    assert errors_of({field: "x" * LIMITS[field]}) == {}


@pytest.mark.parametrize("field", ["subject", "description", "location"])
def test_length_over_limit_rejected(field: str) -> None:
    errors = errors_of({field: "x" * (LIMITS[field] + 1)})
    assert errors == {field: FieldError("error_too_long", max=LIMITS[field])}


def test_length_counts_characters_not_bytes() -> None:
    # 200 emoji are 800 UTF-8 bytes but 200 characters.
    assert errors_of({"subject": "😀" * LIMITS["subject"]}) == {}
    errors = errors_of({"subject": "😀" * (LIMITS["subject"] + 1)})
    assert errors == {"subject": FieldError("error_too_long", max=LIMITS["subject"])}


def test_long_category_reported_as_too_long() -> None:
    long_category = "c" * (LIMITS["category"] + 1)
    errors = errors_of({"category": long_category}, categories=[long_category])
    assert errors == {
        "category": FieldError("error_too_long", max=LIMITS["category"]),
    }


@pytest.mark.parametrize("category", ["null", "it", "IT ", " IT", "Gebaude", "None"])
def test_unknown_category_rejected(category: str) -> None:
    errors = errors_of({"category": category})
    assert errors == {"category": FieldError("error_unknown_category")}


def test_null_accepted_when_tenant_has_it() -> None:
    assert errors_of({"category": "null"}, categories=["IT", "null"]) == {}


def test_category_compared_exactly() -> None:
    # A decomposed `ä` is another string than the tenant's composed one.
    decomposed = "Geba\u0308ude"
    assert errors_of({"category": "Gebäude"}) == {}
    assert errors_of({"category": decomposed}) == {
        "category": FieldError("error_unknown_category")
    }


def test_no_categories_rejects_every_choice() -> None:
    errors = errors_of({}, categories=[])
    assert errors == {"category": FieldError("error_unknown_category")}


@pytest.mark.parametrize("urgency", ["low", "normal", "high"])
def test_urgency_choices_accepted(urgency: str) -> None:
    assert errors_of({"urgency": urgency}) == {}


@pytest.mark.parametrize("urgency", ["urgent", "HIGH", " high", "null", "1"])
def test_invalid_urgency_rejected(urgency: str) -> None:
    assert errors_of({"urgency": urgency}) == {
        "urgency": FieldError("error_invalid_choice")
    }


@pytest.mark.parametrize("field", FIELDS)
def test_invalid_encoding_reported_by_field(field: str) -> None:
    values = {key: value for key, value in VALID.items() if key != field}
    errors = validate(values, {field}, CATEGORIES)
    assert errors == {field: FieldError("error_invalid_encoding")}


def test_every_invalid_encoding_reported() -> None:
    values = {"category": "IT", "location": ""}
    errors = validate(values, {"subject", "description"}, CATEGORIES)
    assert errors == {
        "subject": FieldError("error_invalid_encoding"),
        "description": FieldError("error_invalid_encoding"),
    }


def test_unknown_invalid_field_ignored() -> None:
    # Only the form's own fields are reported, because another name has no
    # field to show the error next to.
    assert validate(VALID, {"nickname"}, CATEGORIES) == {}


def test_exact_strings_pass_validation() -> None:
    values = {
        "category": "IT",
        "subject": "4711",
        "location": "2.50",
        "description": '{"a":1}',
    }
    assert validate(values, set(), CATEGORIES) == {}


# Events


def test_event_keeps_exact_strings() -> None:
    values = {
        "category": "null",
        "subject": "4711",
        "location": "2.50",
        "description": '{"a":1}',
        "urgency": "high",
    }
    event = build_event(make_context(), values, now=SUBMITTED_AT)
    assert event.data.category == "null"
    assert event.data.subject == "4711"
    assert event.data.location == "2.50"
    assert event.data.description == '{"a":1}'
    assert event.data.urgency == "high"
    assert event.data.personnel_number == "004711"

    encoded = messages.ENCODER.encode(event)
    assert b'"subject":"4711"' in encoded
    assert b'"location":"2.50"' in encoded
    assert b'"description":"{\\"a\\":1}"' in encoded
    assert b'"category":"null"' in encoded
    assert b'"personnel_number":"004711"' in encoded


def test_event_keeps_utf8_text() -> None:
    values = {**VALID, "subject": "Straße € 😀"}
    event = build_event(make_context(), values, now=SUBMITTED_AT)
    encoded = messages.ENCODER.encode(event)
    assert b'"subject":"Stra\xc3\x9fe \xe2\x82\xac \xf0\x9f\x98\x80"' in encoded


def test_event_envelope_fields() -> None:
    event = build_event(make_context(), VALID, now=SUBMITTED_AT)
    expected_reference = reference.for_submission(uuid.UUID(SUBMISSION_ID))
    assert event.specversion == "1.0"
    assert event.id == SUBMISSION_ID
    assert event.type == "ch.linkdesk.ticket.submitted.v1"
    assert event.time == SUBMITTED_AT
    assert event.subject == expected_reference
    assert event.data.reference == expected_reference
    assert event.data.submission_id == SUBMISSION_ID
    assert event.data.tenant_id == "6f1c2a4e-9a51-4c1b-8d0e-3f3a1d2b5c7e"
    assert event.data.reporter_name == "Jörg Bäcker"
    assert event.data.language == "fr"
    assert event.data.submitted_at == SUBMITTED_AT


def test_event_defaults_for_optional_fields() -> None:
    values = {key: VALID[key] for key in ("category", "subject", "description")}
    event = build_event(make_context(), values, now=SUBMITTED_AT)
    assert event.data.location == ""
    assert event.data.urgency == "normal"
    empty_urgency = {**values, "urgency": ""}
    event = build_event(make_context(), empty_urgency, now=SUBMITTED_AT)
    assert event.data.urgency == "normal"


def test_event_same_for_same_form() -> None:
    first = build_event(make_context(), VALID, now=SUBMITTED_AT)
    second = build_event(make_context(), VALID, now=SUBMITTED_AT)
    assert messages.ENCODER.encode(first) == messages.ENCODER.encode(second)


def test_event_time_defaults_to_now_in_utc() -> None:
    before = dt.datetime.now(dt.UTC)
    event = build_event(make_context(), VALID)
    after = dt.datetime.now(dt.UTC)
    assert before <= event.time <= after
    assert event.time.utcoffset() == dt.timedelta(0)


def test_event_submission_id_normalised() -> None:
    context = make_context(submission_id=SUBMISSION_ID.upper())
    event = build_event(context, VALID, now=SUBMITTED_AT)
    assert event.id == SUBMISSION_ID
    assert event.data.submission_id == SUBMISSION_ID
