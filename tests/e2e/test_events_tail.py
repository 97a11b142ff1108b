"""`linkdesk events tail` prints ticket events as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import Admin, TenantFixture, form_token, open_link, post_form


def tail(nats_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "linkdesk.cli", "events", "tail", *args],
        env={**os.environ, "NATS_URL": nats_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_following(process: subprocess.Popen[str]) -> str:
    """Return the `following …` line once the consumer exists."""
    assert process.stderr is not None
    line = process.stderr.readline()
    assert line.startswith("following "), line
    return line


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def submit(gateway: httpx.Client, tenant: TenantFixture) -> None:
    answer = post_form(gateway, form_token(open_link(gateway, tenant.link_query())))
    assert answer.status_code == 303


def test_tail_new_events_of_tenant(
    nats_url: str,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    processes: list[subprocess.Popen[str]],
) -> None:
    """Started before the submission, it prints its submitted and created events."""
    process = tail(nats_url, "--tenant", tenant.id, "--max", "2", "--timeout", "60")
    processes.append(process)
    assert "new events only" in wait_following(process)

    submit(gateway, tenant)
    output, _ = process.communicate(timeout=90)

    assert process.returncode == 0
    lines = [json.loads(line) for line in output.splitlines()]
    assert [event["type"] for event in lines] == [
        "ch.linkdesk.ticket.submitted.v1",
        "ch.linkdesk.ticket.created.v1",
    ]
    assert {event["data"]["tenant_id"] for event in lines} == {tenant.id}
    [ticket] = admin.list_tickets(tenant.id)
    assert lines[1]["data"]["ticket_id"] == ticket["id"]


def test_tail_since_replays_only_type(
    nats_url: str,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    processes: list[subprocess.Popen[str]],
) -> None:
    """With --since and --type it replays past events of one type, then stops."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    submit(gateway, tenant)
    submit(gateway, tenant)
    admin.wait_for_tickets(tenant.id, 2)
    deadline = time.monotonic() + 30
    process = None
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        # The created events follow the stored tickets through the outbox.
        process = tail(
            nats_url,
            "--tenant", tenant.id,
            "--type", "created",
            "--since", start.isoformat(),
            "--max", "2",
            "--timeout", "5",
        )  # fmt: skip
        processes.append(process)
        output, _ = process.communicate(timeout=60)
        lines = [json.loads(line) for line in output.splitlines()]
        if len(lines) == 2:
            break

    assert process is not None
    assert process.returncode == 0
    assert [event["type"] for event in lines] == ["ch.linkdesk.ticket.created.v1"] * 2


def test_tail_rejects_bad_since(nats_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "linkdesk.cli", "events", "tail", "--since", "gestern"],
        env={**os.environ, "NATS_URL": nats_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert "invalid --since 'gestern'" in result.stderr
