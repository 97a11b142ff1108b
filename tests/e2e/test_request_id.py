"""The gateway's request id reaches the log lines of every service it involves.

The services here log at DEBUG, where tenant and personnel write a line per
handled request, so they run against servers of their own rather than
the session's.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import subjects
from tests.helpers import form_token, open_link, post_form
from tests.own_servers import OwnStack, own_stack


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnStack]:
    folder = tmp_path_factory.mktemp("request-id")
    with own_stack(folder, {"LOG_LEVEL": "DEBUG"}) as own:
        yield own


def records(path: Path, offset: int = 0) -> list[dict[str, Any]]:
    """Return the JSON log lines of a service's log file from byte `offset` on."""
    found = []
    with path.open("rb") as log:
        log.seek(offset)
        data = log.read()
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def wait_for_record(
    own: OwnStack, service: str, timeout: float = 15.0, **fields: object
) -> dict[str, Any]:
    """Return the first log line of `service` with `fields`; fail after `timeout`."""
    path = own.stack.services[service].log_path
    deadline = time.monotonic() + timeout
    while True:
        for record in records(path):
            if all(record.get(key) == value for key, value in fields.items()):
                return record
        if time.monotonic() >= deadline:
            pytest.fail(f"no {service} log line with {fields} within {timeout} s")
        time.sleep(0.1)


def wait_for_stored_ticket(
    own: OwnStack, request_id: str, timeout: float = 15.0
) -> tuple[dict[str, Any], int]:
    """Return the ticket service's `tickets_stored` line that lists
    `request_id`, and the index of its ticket in the line's lists."""
    path = own.stack.services["ticket"].log_path
    deadline = time.monotonic() + timeout
    while True:
        for record in records(path):
            request_ids = record.get("request_ids") or []
            if record.get("event") == "tickets_stored" and request_id in request_ids:
                return record, request_ids.index(request_id)
        if time.monotonic() >= deadline:
            pytest.fail(f"no tickets_stored line with request id {request_id}")
        time.sleep(0.1)


def gateway_log_size(own: OwnStack) -> int:
    return own.stack.services["gateway"].log_path.stat().st_size


def access_log_request_id(own: OwnStack, offset: int, method: str, status: int) -> str:
    """Return the request id of the one public access line after `offset`.

    The gateway writes the line after it sent the response, so this waits for
    it for up to five seconds.
    """
    deadline = time.monotonic() + 5.0
    while True:
        lines = [
            record
            for record in records(own.stack.services["gateway"].log_path, offset)
            if record.get("event") == "http_request"
            and record.get("method") == method
            and record.get("status") == status
            and str(record.get("path", "")).startswith("/public/")
        ]
        if lines or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    request_id = str(lines[0]["request_id"])
    assert len(request_id) == 32
    return request_id


def test_request_ids_reach_every_service(debug_stack: OwnStack) -> None:
    own = debug_stack
    tenant = own.admin.create_tenant_with_person("004711", "Jörg Bäcker")
    offset = gateway_log_size(own)
    with httpx.Client(base_url=own.stack.url("gateway")) as gateway:
        page = open_link(gateway, tenant.link_query())
        assert page.status_code == 200
        answer = post_form(gateway, form_token(page))
        assert answer.status_code == 303, answer.text[:500]

    # Opening the link sends requests to tenant and personnel. The post of
    # the form just opened is checked from the cache and reaches ticket only.
    open_id = access_log_request_id(own, offset, "GET", 200)
    post_id = access_log_request_id(own, offset, "POST", 303)

    # Both access lines name the tenant. The line of the opened form is a
    # debug line, like the other services' request_answered lines.
    for request_id in (open_id, post_id):
        access = wait_for_record(
            own, "gateway", event="http_request", request_id=request_id
        )
        assert access["tenant_id"] == tenant.id
    opened = wait_for_record(own, "gateway", event="form_opened", request_id=open_id)
    assert opened["level"] == "debug"
    assert opened["tenant_id"] == tenant.id

    stored, index = wait_for_stored_ticket(own, post_id)
    assert stored["level"] == "info"
    assert stored["tenant_ids"][index] == tenant.id
    tenant_line = wait_for_record(
        own,
        "tenant",
        event="request_answered",
        subject=subjects.TENANT_RESOLVE_SECRET,
        request_id=open_id,
    )
    assert tenant_line["level"] == "debug"
    wait_for_record(
        own,
        "personnel",
        event="request_answered",
        subject=subjects.PERSONNEL_RESOLVE,
        request_id=open_id,
    )


def test_rejection_logged_with_request_id(debug_stack: OwnStack) -> None:
    own = debug_stack
    tenant = own.admin.create_tenant_with_person("004711", "Jörg Bäcker")
    unknown_secret = uuid.uuid4().hex
    offset = gateway_log_size(own)
    with httpx.Client(base_url=own.stack.url("gateway")) as gateway:
        page = open_link(gateway, f"{unknown_secret}&{tenant.personnel_number}")
        assert page.status_code == 404

    request_id = access_log_request_id(own, offset, "GET", 404)
    access = wait_for_record(
        own, "gateway", event="http_request", request_id=request_id
    )
    # A link that opened nothing names no tenant, not even the one of the number.
    assert "tenant_id" not in access

    rejected = wait_for_record(
        own, "tenant", event="request_rejected", request_id=request_id
    )
    assert rejected["level"] == "info"
    assert rejected["reason"] == "unknown_secret"
    assert rejected["subject"] == subjects.TENANT_RESOLVE_SECRET
    tenant_log = own.stack.services["tenant"].log_path.read_text(errors="replace")
    assert unknown_secret not in tenant_log
