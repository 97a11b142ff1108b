"""Wire the personnel service: admin HTTP API and NATS request handlers."""

from __future__ import annotations

from litestar import Litestar

from services.personnel import api, lookup, repository
from shared import messages, subjects
from shared.service_app import Endpoint, ServiceSpec
from shared.service_app import create_app as build

SERVICE = "personnel"

SPEC = ServiceSpec(
    service=SERVICE,
    schema=repository.SCHEMA,
    package="services.personnel",
    description="The personnel list of each tenant.",
    controllers=[api.PersonnelController],
    endpoints=[
        Endpoint(
            "resolve_person",
            subjects.PERSONNEL_RESOLVE,
            messages.ResolvePerson,
            lookup.resolve_person,
        )
    ],
)


def create_app() -> Litestar:
    """Build the personnel service's ASGI app."""
    return build(SPEC)
