"""Ask the tenant and personnel services whether a link may open a form."""

from __future__ import annotations

from dataclasses import dataclass

from nats.aio.client import Client

from shared import messages, subjects
from shared.messaging import REQUEST_ID_HEADER, request


@dataclass(frozen=True)
class Reporter:
    """A link that resolved to an active person of a tenant with intake on."""

    tenant: messages.TenantForm
    person: messages.Person


@dataclass(frozen=True)
class Rejected:
    """Why a link opens nothing; logged, never shown."""

    reason: str


class Directory:
    """Typed NATS requests to the tenant and personnel services.

    Every method raises `shared.messaging.DependencyUnavailable` when a
    service does not answer in time, so that a caller never mistakes an
    outage for an invalid link.
    """

    def __init__(self, nc: Client, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout

    async def _person(
        self, tenant: messages.TenantForm, personnel_number: str, request_id: str
    ) -> Reporter | Rejected:
        resolved = await request(
            self.nc,
            subjects.PERSONNEL_RESOLVE,
            messages.ResolvePerson(
                tenant_id=tenant.tenant_id, personnel_number=personnel_number
            ),
            messages.PersonResolved,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )
        if resolved.person is None:
            return Rejected(resolved.reason or "unknown_person")
        return Reporter(tenant=tenant, person=resolved.person)

    async def resolve_link(
        self, secret: str, personnel_number: str, request_id: str
    ) -> Reporter | Rejected:
        """Resolve the secret to a tenant, then the number to a person of it."""
        resolved = await request(
            self.nc,
            subjects.TENANT_RESOLVE_SECRET,
            messages.ResolveSecret(secret=secret),
            messages.TenantResolved,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )
        if resolved.tenant is None:
            return Rejected(resolved.reason or "unknown_secret")
        return await self._person(resolved.tenant, personnel_number, request_id)

    async def recheck(
        self, tenant_id: str, personnel_number: str, request_id: str
    ) -> Reporter | Rejected:
        """Check again at submit time that intake is on and the person active."""
        resolved = await request(
            self.nc,
            subjects.TENANT_GET,
            messages.GetTenant(tenant_id=tenant_id),
            messages.TenantResolved,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )
        if resolved.tenant is None:
            return Rejected(resolved.reason or "unknown_tenant")
        return await self._person(resolved.tenant, personnel_number, request_id)
