"""examples/subscriber.py reads one tenant's events and skips repeated ids."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import nats

from shared import subjects
from tests.helpers import Admin, TenantFixture, form_token, open_link, post_form

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "subscriber.py"


def run_example(nats_url: str, *args: str) -> tuple[list[dict[str, Any]], str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--nats-url", nats_url, *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()], result.stderr


def change_status(admin: Admin, tenant_id: str, ticket_id: int, status: str) -> None:
    response = admin.tickets.post(
        f"/admin/tenants/{tenant_id}/tickets/{ticket_id}/status",
        json={"status": status},
    )
    assert response.status_code == 200, response.text


async def test_example_subscriber_reads_tenant_and_deduplicates(
    nats_url: str,
    gateway: httpx.Client,
    admin: Admin,
    tenant: TenantFixture,
    tmp_path: Path,
) -> None:
    other = admin.create_tenant_with_person("000815", "Zoë Keller")
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    for owner in (tenant, other):
        page = open_link(gateway, owner.link_query())
        assert post_form(gateway, form_token(page)).status_code == 303
    [ticket] = admin.wait_for_tickets(tenant.id, 1)
    change_status(admin, tenant.id, ticket["id"], "in_progress")
    durable = f"example-{uuid.uuid4().hex[:8]}"
    seen = tmp_path / "seen.txt"
    common = ["--tenant", tenant.id, "--durable", durable, "--seen-file", str(seen)]

    first, _ = run_example(nats_url, *common, "--max", "3", "--timeout", "30")

    assert [event["type"] for event in first] == [
        "ch.linkdesk.ticket.submitted.v1",
        "ch.linkdesk.ticket.created.v1",
        "ch.linkdesk.ticket.status_changed.v1",
    ]
    assert {event["data"]["tenant_id"] for event in first} == {tenant.id}
    assert seen.read_text().split() == [event["id"] for event in first]

    # The same created event once more under another Nats-Msg-Id, as an
    # outbox retry after the duplicate window would publish it, then news.
    client = await nats.connect(nats_url)
    try:
        await client.jetstream().publish(
            subjects.ticket_created(tenant.id),
            json.dumps(first[1]).encode(),
            stream=subjects.TICKET_STREAM,
            headers={"Nats-Msg-Id": str(uuid.uuid4())},
        )
    finally:
        await client.close()
    change_status(admin, tenant.id, ticket["id"], "resolved")

    second, errors = run_example(nats_url, *common, "--max", "1", "--timeout", "30")

    assert f"skipped duplicate event {first[1]['id']}" in errors
    assert len(second) == 1
    assert second[0]["type"] == "ch.linkdesk.ticket.status_changed.v1"
    assert second[0]["data"]["to_status"] == "resolved"

    replay, _ = run_example(
        nats_url,
        "--tenant", tenant.id,
        "--durable", durable,
        "--since", start.isoformat(),
        "--max", "2",
        "--timeout", "30",
    )  # fmt: skip

    assert [event["id"] for event in replay] == [event["id"] for event in first[:2]]
