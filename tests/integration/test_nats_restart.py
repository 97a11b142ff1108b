"""The services through a restart of nats-server with the same store folder.

The test runs servers of its own, because it stops NATS under the services.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.own_servers import (
    Attempt,
    Submitter,
    own_stack,
    wait_for_readiness,
    wait_until_stored,
)

PASSES_BEFORE = 10
"""Passes through the form before NATS stops."""

PASSES_WHILE_DOWN = 5
"""Passes through the form while NATS is down; each waits for the request
timeout, so this keeps NATS down for a few seconds."""

PASSES_AFTER = 10
"""Passes through the form after the ticket service is ready again."""

MAX_PASSES = 60
MAX_SECONDS = 45.0

ENV = {
    # Short waits keep the test quick; the contract is "bounded".
    "NATS_REQUEST_TIMEOUT": "1.0",
    "TICKET_ACK_WAIT_SECONDS": "5",
}


def during(attempts: list[Attempt], start: float, end: float) -> list[Attempt]:
    """Return the passes that began and ended between `start` and `end`."""
    return [a for a in attempts if a.started >= start and a.finished <= end]


@pytest.mark.slow
def test_nats_restart_stores_accepted_once(tmp_path: Path) -> None:
    """While NATS is down the gateway responds with 503 and the ticket service
    is not ready. Afterwards every accepted submission is stored exactly once."""
    with own_stack(tmp_path, ENV) as own:
        tenant = own.admin.create_tenant_with_person("004711", "Jörg Bäcker")
        ticket = own.stack.services["ticket"]
        ticket_pid = ticket.pid
        submitter = Submitter(
            own.stack.url("gateway"),
            tenant,
            own.form_key,
            max_attempts=MAX_PASSES,
            max_seconds=MAX_SECONDS,
            interval=0.25,
        )
        submitter.start()
        try:
            submitter.wait_for(PASSES_BEFORE, timeout=20)

            own.nats.stop()
            stopped_at = time.monotonic()
            not_ready = wait_for_readiness(ticket.url, 503, timeout=10)
            submitter.wait_for(PASSES_WHILE_DOWN, timeout=30)

            # The same store folder and ports, as a restarted container has.
            own.nats.start()
            restarted_at = time.monotonic()
            ready = wait_for_readiness(ticket.url, 200, timeout=30)
            submitter.wait_for(PASSES_AFTER, timeout=30)
        finally:
            attempts = submitter.stop()

        gateway_metrics = httpx.get(f"{own.stack.url('gateway')}/metrics").text
        accepted = {str(a.submission_id) for a in attempts if a.accepted}
        stored = wait_until_stored(
            own.ticket_postgres.url, tenant.id, accepted, timeout=30
        )

        assert ticket.running
        assert ticket.pid == ticket_pid

    assert not_ready.json()["checks"]["nats"] is False
    assert ready.json()["checks"] == {
        "nats": True,
        "database": True,
        "consumer": True,
        "outbox_relay": True,
    }

    for attempt in attempts:
        assert attempt.open_status in (200, 503), attempt
        assert attempt.post_status in (None, 303, 503), attempt
    outage = during(attempts, stopped_at, restarted_at)
    assert outage, "no pass through the form while NATS was down"
    for attempt in outage:
        assert not attempt.accepted, attempt
        assert 503 in (attempt.open_status, attempt.post_status), attempt
    assert [a for a in attempts if a.started > restarted_at and a.accepted]

    missing = accepted - stored.keys()
    assert not missing, f"accepted but never stored: {missing}"
    assert all(count == 1 for count in stored.values()), stored
    posted = {a.submission_id for a in attempts if a.post_status is not None}
    assert stored.keys() <= posted

    assert failed_requests(gateway_metrics) > 0


def failed_requests(metrics_text: str) -> float:
    """Return the gateway's count of NATS requests that got no usable reply."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "linkdesk_nats_requests_total"
        and sample.labels["outcome"] not in ("ok", "rejected")
    )
