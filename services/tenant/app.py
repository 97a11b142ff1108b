"""Wire the tenant service: admin HTTP API and NATS request handlers."""

from __future__ import annotations

from litestar import Litestar

from services.tenant import api, lookup, repository
from shared import messages, subjects
from shared.service_app import Endpoint, ServiceSpec
from shared.service_app import create_app as build

SERVICE = "tenant"

SPEC = ServiceSpec(
    service=SERVICE,
    schema=repository.SCHEMA,
    package="services.tenant",
    description=(
        "Tenants, the tickets-without-login switch, link secrets and signing keys."
    ),
    controllers=[api.TenantController],
    endpoints=[
        Endpoint(
            "resolve_secret",
            subjects.TENANT_RESOLVE_SECRET,
            messages.ResolveSecret,
            lookup.resolve_secret,
        ),
        Endpoint(
            "get_tenant", subjects.TENANT_GET, messages.GetTenant, lookup.get_form
        ),
        Endpoint(
            "verify_signed_link",
            subjects.TENANT_VERIFY_SIGNED_LINK,
            messages.VerifySignedLink,
            lookup.verify_signed_link,
        ),
    ],
)


def create_app() -> Litestar:
    """Build the tenant service's ASGI app."""
    return build(SPEC)
