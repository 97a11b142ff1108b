"""Wire the ticket service: consumer, outbox relay and admin HTTP API."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State

from services.ticket import api, repository, submission_lookup, workers
from shared import messages, subjects
from shared.service_app import Endpoint, ServiceSpec
from shared.service_app import create_app as build

SERVICE = "ticket"


async def _workers_ready(state: State) -> dict[str, bool]:
    consumer = getattr(state, "consumer", None)
    checks = {"consumer": bool(consumer and consumer.fetching)}
    relay = getattr(state, "relay", None)
    if relay is not None:
        checks["outbox_relay"] = relay.healthy
    return checks


SPEC = ServiceSpec(
    service=SERVICE,
    schema=repository.SCHEMA,
    package="services.ticket",
    description="Tickets stored from submissions, their lifecycle, and parked "
    "messages.",
    controllers=[api.TicketController],
    endpoints=[
        Endpoint(
            "find_submission",
            subjects.TICKET_FIND_SUBMISSION,
            messages.FindSubmission,
            submission_lookup.find_submission,
        )
    ],
    worker=workers.run_workers,
    readiness=_workers_ready,
)


def create_app() -> Litestar:
    """Build the ticket service's ASGI app."""
    return build(SPEC)
