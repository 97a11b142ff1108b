"""Ask the tenant service whether a submission's tenant exists.

The ticket service does not read the tenant service's tables; it sends
`GetTenant` over NATS. Tenants are not deleted, so a tenant once found is
remembered for the life of the process and asked about only once.
"""

from __future__ import annotations

from nats.aio.client import Client

from shared import messages, messaging, subjects


class TenantDirectory:
    def __init__(self, nc: Client, *, timeout: float) -> None:
        self.nc = nc
        self.timeout = timeout
        self._known: set[str] = set()

    async def exists(self, tenant_id: str) -> bool:
        """Return whether the tenant exists, whether or not its intake is on.

        Raises messaging.DependencyUnavailable when the tenant service sends no
        usable reply, which is no evidence that the tenant is unknown.
        """
        if tenant_id in self._known:
            return True
        reply = await messaging.request(
            self.nc,
            subjects.TENANT_GET,
            messages.GetTenant(tenant_id=tenant_id),
            messages.TenantResolved,
            timeout=self.timeout,
        )
        if reply.reason == "unknown_tenant":
            return False
        self._known.add(tenant_id)
        return True
