"""Generated event schemas are current, and the event wire format holds."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec
import pytest
import yaml

from linkdesk import schemas
from shared import events


def test_generated_files_up_to_date() -> None:
    """docs/events/ matches what `python -m linkdesk.schemas` writes."""
    stale = schemas.outdated(schemas.DEFAULT_DIR, schemas.generate())

    assert stale == [], (
        f"out of date in docs/events/: {stale}; run `python -m linkdesk.schemas`"
    )


def test_check_reports_stale_file(tmp_path: Any) -> None:
    schemas.write(tmp_path, schemas.generate())
    (tmp_path / "asyncapi.yaml").write_text("asyncapi: 2.0.0\n")

    assert schemas.run(tmp_path, check=True) == 1
    assert schemas.run(tmp_path, check=False) == 0
    assert schemas.run(tmp_path, check=True) == 0


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def test_asyncapi_document_refs_resolve() -> None:
    document = yaml.safe_load(
        (schemas.DEFAULT_DIR / "asyncapi.yaml").read_text(encoding="utf-8")
    )

    assert document["asyncapi"] == "3.0.0"
    refs = _refs(document)
    assert refs
    for ref in refs:
        assert _resolve(document, ref) is not None
    addresses = sorted(c["address"] for c in document["channels"].values())
    assert addresses == [
        "tickets.v1.{tenant_id}.created",
        "tickets.v1.{tenant_id}.status_changed",
        "tickets.v1.{tenant_id}.submitted",
    ]
    for operation in document["operations"].values():
        assert operation["action"] == "send"


@pytest.mark.parametrize("kind", list(events.EVENT_TYPES))
def test_json_schema_lists_cloudevents_attributes(kind: str) -> None:
    schema = schemas.json_schema(kind)
    name = events.EVENT_TYPES[kind].__name__
    envelope = schema["$defs"][name]

    assert schema["$ref"] == f"#/$defs/{name}"
    assert set(envelope["required"]) == {"id", "time", "subject", "data"}
    for attribute in ("specversion", "source", "type", "datacontenttype"):
        assert attribute in envelope["properties"]
    assert envelope["properties"]["time"]["format"] == "date-time"


def test_submitted_wire_format_unchanged() -> None:
    """TicketSubmitted encodes exactly as the gateway always published it."""
    at = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)
    event = events.TicketSubmitted(
        id="6f1c1a52-0000-4000-8000-000000000001",
        time=at,
        subject="T-00000-00000",
        data=events.TicketSubmittedData(
            submission_id="6f1c1a52-0000-4000-8000-000000000001",
            reference="T-00000-00000",
            tenant_id="6f1c1a52-0000-4000-8000-0000000000aa",
            personnel_number="004711",
            reporter_name="Jörg Bäcker",
            category="IT",
            subject="Drucker",
            description="Kein Papier",
            submitted_at=at,
        ),
    )

    assert (
        msgspec.json.encode(event)
        == (
            '{"specversion":"1.0","id":"6f1c1a52-0000-4000-8000-000000000001",'
            '"source":"/linkdesk/gateway","type":"ch.linkdesk.ticket.submitted.v1",'
            '"time":"2026-03-01T08:30:00Z","subject":"T-00000-00000",'
            '"datacontenttype":"application/json","data":{'
            '"submission_id":"6f1c1a52-0000-4000-8000-000000000001",'
            '"reference":"T-00000-00000",'
            '"tenant_id":"6f1c1a52-0000-4000-8000-0000000000aa",'
            '"personnel_number":"004711","reporter_name":"Jörg Bäcker",'
            '"category":"IT","subject":"Drucker","description":"Kein Papier",'
            '"location":"","urgency":"normal","language":"de",'
            '"submitted_at":"2026-03-01T08:30:00Z"}}'
        ).encode()
    )


@pytest.mark.parametrize("kind", list(events.EVENT_TYPES))
def test_events_carry_only_allowed_personnel_fields(kind: str) -> None:
    """Personnel data in events: the personnel number and the display name only."""
    schema = schemas.json_schema(kind)
    fields = {
        field
        for definition in schema["$defs"].values()
        for field in definition.get("properties", {})
    }

    assert not {"secret", "email", "phone", "password", "token"} & fields
    personnel = {field for field in fields if "personnel" in field or "name" in field}
    assert personnel <= {"personnel_number", "reporter_name"}
