"""The ticket service through PostgreSQL faults while tickets are submitted.

The faults, in order: the ticket service's connections are terminated,
PostgreSQL restarts, and PostgreSQL stays stopped for a while. The ticket
service has a PostgreSQL server of its own here, so the gateway keeps
accepting submissions during the faults (tenant and personnel use the other
server), and the accepted ones wait in the stream. With one
server for all services the gateway would answer 503 instead, and nothing
would wait.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
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

OUTAGE_SECONDS = 15.0
"""How long PostgreSQL stays stopped. A longer outage is expected to add only
more redeliveries of the same kind."""

PASSES_PER_PHASE = 5
"""Passes through the form after each fault before the next one starts."""

ENV = {
    "NATS_REQUEST_TIMEOUT": "1.0",
    # Messages fetched in the batch of a failed insert are redelivered after
    # the ack wait, which is 30 s by default. 5 s keeps the test short.
    "TICKET_ACK_WAIT_SECONDS": "5",
}


def terminate_ticket_connections(database_url: str) -> int:
    """Terminate the ticket service's sessions; return how many there were."""

    async def terminate() -> int:
        connection = await asyncpg.connect(database_url)
        try:
            count = await connection.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE application_name = 'linkdesk-ticket'"
            )
        finally:
            await connection.close()
        return int(count)

    return asyncio.run(terminate())


def accepted_between(attempts: list[Attempt], start: float, end: float) -> set[str]:
    return {
        str(a.submission_id)
        for a in attempts
        if a.accepted and a.started >= start and a.finished <= end
    }


def ticket_counter(metrics_text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


@pytest.mark.slow
def test_database_faults_lose_no_ticket(tmp_path: Path) -> None:
    """Terminated connections, a restart and a stop of PostgreSQL lose no
    accepted ticket and store none twice, and the ticket service recovers
    without a restart. PostgreSQL stays stopped for 15 s rather than a minute,
    to keep the test short."""
    with own_stack(tmp_path, ENV, separate_ticket_database=True) as own:
        tenant = own.admin.create_tenant_with_person("004711", "Jörg Bäcker")
        ticket = own.stack.services["ticket"]
        ticket_pid = ticket.pid
        database = own.ticket_postgres
        submitter = Submitter(
            own.stack.url("gateway"),
            tenant,
            own.form_key,
            max_attempts=200,
            max_seconds=55.0,
            interval=0.2,
        )
        submitter.start()
        try:
            submitter.wait_for(PASSES_PER_PHASE, timeout=20)

            terminated = terminate_ticket_connections(database.url)
            terminated_at = time.monotonic()
            submitter.wait_for(PASSES_PER_PHASE, timeout=20)

            database.stop()
            database.start()
            restarted_at = time.monotonic()
            submitter.wait_for(PASSES_PER_PHASE, timeout=20)

            database.stop()
            stopped_at = time.monotonic()
            not_ready = wait_for_readiness(ticket.url, 503, timeout=10)
            remaining = OUTAGE_SECONDS - (time.monotonic() - stopped_at)
            time.sleep(max(remaining, 0.0))
            database.start()
            started_at = time.monotonic()
            ready = wait_for_readiness(ticket.url, 200, timeout=30)
            submitter.wait_for(PASSES_PER_PHASE, timeout=20)
        finally:
            attempts = submitter.stop()

        accepted = {str(a.submission_id) for a in attempts if a.accepted}
        stored = wait_until_stored(database.url, tenant.id, accepted, timeout=30)
        ticket_metrics = httpx.get(f"{ticket.url}/metrics").text

        assert ticket.running
        assert ticket.pid == ticket_pid

    assert terminated >= 1
    assert not_ready.json()["checks"]["database"] is False
    assert ready.json()["checks"]["database"] is True
    for attempt in attempts:
        assert attempt.open_status == 200, attempt
        assert attempt.post_status == 303, attempt
    after_terminate = accepted_between(attempts, terminated_at, restarted_at)
    assert after_terminate, "nothing accepted after the connections were terminated"
    during_outage = accepted_between(attempts, stopped_at, started_at)
    assert during_outage, "nothing accepted while PostgreSQL was stopped"

    missing = accepted - stored.keys()
    assert not missing, f"accepted but never stored: {missing}"
    assert all(count == 1 for count in stored.values()), stored
    assert stored.keys() <= accepted

    retries = ticket_counter(
        ticket_metrics,
        "linkdesk_submission_retries_total",
        reason="database_unavailable",
    )
    assert retries > 0
    assert ticket_counter(ticket_metrics, "linkdesk_submission_redeliveries_total") > 0
