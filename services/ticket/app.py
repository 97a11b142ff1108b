"""Wire the ticket service: submission consumer and admin HTTP API."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State

from services.ticket import api, consumer, repository
from shared.service_app import ServiceSpec
from shared.service_app import create_app as build

SERVICE = "ticket"


async def _consumer_ready(state: State) -> dict[str, bool]:
    running = getattr(state, "consumer", None)
    return {"consumer": bool(running and running.fetching)}


SPEC = ServiceSpec(
    service=SERVICE,
    schema=repository.SCHEMA,
    package="services.ticket",
    description="Tickets stored from submissions, and parked messages.",
    controllers=[api.TicketController],
    worker=consumer.run_consumer,
    readiness=_consumer_ready,
)


def create_app() -> Litestar:
    """Build the ticket service's ASGI app."""
    return build(SPEC)
