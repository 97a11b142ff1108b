"""Validate a posted ticket form field by field; no I/O."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from services.gateway.form_token import FormContext
from shared import events, reference, text

LIMITS: Mapping[str, int] = {
    "category": 80,
    "subject": 200,
    "description": 10_000,
    "location": 200,
}
"""Maximum length of each field in characters."""

URGENCIES: tuple[events.Urgency, ...] = ("low", "normal", "high")
FIELDS = ("category", "subject", "description", "location", "urgency")
REQUIRED = ("category", "subject", "description")
DEFAULT_URGENCY: events.Urgency = "normal"


@dataclass(frozen=True)
class FieldError:
    """A translation key of the error and its placeholder values."""

    key: str
    max: int | None = None


def validate(
    values: Mapping[str, str], invalid_encoding: set[str], categories: list[str]
) -> dict[str, FieldError]:
    """Return the errors of the form fields; empty when the form is valid."""
    errors: dict[str, FieldError] = {}
    for name in FIELDS:
        if name in invalid_encoding:
            errors[name] = FieldError("error_invalid_encoding")
            continue
        value = values.get(name, "")
        if name in REQUIRED and not value.strip():
            errors[name] = FieldError("error_required")
        elif name in LIMITS and len(value) > LIMITS[name]:
            errors[name] = FieldError("error_too_long", max=LIMITS[name])
        elif text.has_control_character(value, text.LINE_BREAKS_AND_TABS):
            errors[name] = FieldError("error_control_character")
    if "category" not in errors and values.get("category") not in categories:
        errors["category"] = FieldError("error_unknown_category")
    urgency = values.get("urgency") or DEFAULT_URGENCY
    if "urgency" not in errors and urgency not in URGENCIES:
        errors["urgency"] = FieldError("error_invalid_choice")
    return errors


def stored_values(values: Mapping[str, str]) -> tuple[str, ...]:
    """Return the values of `FIELDS` as the ticket stores them, so that a
    repeated post can be compared with the stored one."""
    stored = {name: values.get(name, "") for name in FIELDS}
    stored["urgency"] = stored["urgency"] or DEFAULT_URGENCY
    return tuple(stored[name] for name in FIELDS)


def build_event(
    context: FormContext,
    values: Mapping[str, str],
    now: dt.datetime | None = None,
) -> events.TicketSubmitted:
    """Build the submitted event of a valid form; text stays exactly as typed."""
    submitted_at = now or dt.datetime.now(dt.UTC)
    submission_id = uuid.UUID(context.submission_id)
    urgency = values.get("urgency") or DEFAULT_URGENCY
    assert urgency in URGENCIES
    data = events.TicketSubmittedData(
        submission_id=str(submission_id),
        reference=reference.for_submission(submission_id),
        tenant_id=context.tenant_id,
        personnel_number=context.personnel_number,
        reporter_name=context.person_name,
        category=values["category"],
        subject=values["subject"],
        description=values["description"],
        location=values.get("location", ""),
        urgency=urgency,
        language=context.language,
        submitted_at=submitted_at,
    )
    return events.TicketSubmitted(
        id=str(submission_id),
        time=submitted_at,
        subject=data.reference,
        data=data,
    )
