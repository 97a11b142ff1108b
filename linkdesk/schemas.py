"""Generate the JSON Schemas and the AsyncAPI document of the ticket events.

The msgspec structs in `shared.events` are the only source: nothing in
`docs/events/` is written by hand. Run `python -m linkdesk.schemas` (or
`linkdesk events schemas --write`) after changing an event type; a test fails
while the checked-in files differ from what this module generates.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import yaml

from shared import events, subjects

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "docs" / "events"
"""`docs/events/` of the repository this module was installed from."""

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_MESSAGE_IDS = {
    "submitted": "the submission id, so a form posted twice is stored once",
    "created": "the event id",
    "status_changed": "the event id",
}

_CHANNEL_DESCRIPTIONS = {
    "submitted": "A reporter submitted the ticket form; the gateway publishes "
    "this after validating the form. The ticket service stores it.",
    "created": "The ticket service stored a submission as a ticket. Published "
    "through the service's transactional outbox, exactly once per ticket id "
    "within the stream's duplicate window.",
    "status_changed": "The help desk changed a ticket's status. Published "
    "through the outbox in the order of the ticket's history.",
}


def _camel(kind: str) -> str:
    return "".join(part.capitalize() for part in kind.split("_"))


def _type_name(kind: str) -> str:
    return events.EVENT_TYPES[kind].__name__


def json_schema(kind: str) -> dict[str, Any]:
    """Return the standalone JSON Schema (2020-12) of one event kind."""
    event_type = events.EVENT_TYPES[kind]
    schema = msgspec.json.schema(event_type)
    address = subjects.ticket_event("{tenant_id}", kind)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": event_type.__name__,
        "description": f"Ticket event on subject {address}.",
        **schema,
    }


def asyncapi_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document of every ticket event."""
    kinds = list(events.EVENT_TYPES)
    _, components = msgspec.json.schema_components(
        [events.EVENT_TYPES[kind] for kind in kinds],
        ref_template="#/components/schemas/{name}",
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for kind in kinds:
        name = _type_name(kind)
        channel = f"ticket{_camel(kind)}"
        channels[channel] = {
            "address": subjects.ticket_event("{tenant_id}", kind),
            "description": _CHANNEL_DESCRIPTIONS[kind],
            "parameters": {"tenant_id": {"description": "Tenant id (UUID)."}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
        }
        operations[f"send{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
        docstring = (events.EVENT_TYPES[kind].__doc__ or "").strip()
        messages[name] = {
            "name": name,
            "title": name,
            "summary": docstring.splitlines()[0] if docstring else name,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "JetStream deduplication id: "
                        f"{_MESSAGE_IDS[kind]}.",
                    }
                },
            },
            "payload": {"$ref": f"#/components/schemas/{name}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "linkdesk ticket events",
            "version": "1.0.0",
            "description": (
                "CloudEvents 1.0 envelopes in JSON on the JetStream stream "
                f"{subjects.TICKET_STREAM} "
                f"(subjects {subjects.TICKET_EVENTS_WILDCARD}). "
                "The tenant id is a subject token, so NATS permissions can limit "
                "a subscriber to one tenant. Events carry no secret; personnel "
                "data is limited to the personnel number and display name of the "
                "reporter. Generated from shared/events.py by "
                "`python -m linkdesk.schemas`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "development": {
                "host": "127.0.0.1:4222",
                "protocol": "nats",
                "description": "The NATS server that `linkdesk dev` starts.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


def generate() -> dict[str, str]:
    """Return the content of every generated file, keyed by file name."""
    files: dict[str, str] = {}
    for kind in events.EVENT_TYPES:
        text = json.dumps(json_schema(kind), indent=2, ensure_ascii=False)
        files[f"ticket.{kind}.v1.schema.json"] = text + "\n"
    header = "# Generated by `python -m linkdesk.schemas` from shared/events.py.\n"
    files["asyncapi.yaml"] = header + yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=88
    )
    return files


def outdated(directory: Path, files: Mapping[str, str]) -> list[str]:
    """Return the names of generated files that are missing or differ in `directory`."""
    stale = []
    for name, content in files.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            stale.append(name)
    return stale


def write(directory: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files that changed and return their names."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = outdated(directory, files)
    for name in changed:
        (directory / name).write_text(files[name], encoding="utf-8")
    return changed


def run(directory: Path, *, check: bool) -> int:
    """Check or write the generated files; return the exit code."""
    files = generate()
    if check:
        stale = outdated(directory, files)
        for name in stale:
            print(f"out of date: {directory / name}", file=sys.stderr)
        if stale:
            print(
                "regenerate with `python -m linkdesk.schemas` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{len(files)} files up to date in {directory}")
        return 0
    changed = write(directory, files)
    for name in changed:
        print(f"wrote {directory / name}")
    if not changed:
        print(f"{len(files)} files up to date in {directory}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m linkdesk.schemas",
        description="Write the JSON Schemas and AsyncAPI document of the ticket "
        "events into docs/events/.",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_DIR, help=f"folder (default {DEFAULT_DIR})"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when a file is missing or out of date",
    )
    args = parser.parse_args(argv)
    return run(args.out, check=args.check)


if __name__ == "__main__":
    sys.exit(main())
