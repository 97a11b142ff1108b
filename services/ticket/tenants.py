"""Ask the tenant service whether a submission's tenant exists.

The ticket service does not read the tenant service's tables; it sends
`GetTenant` over NATS. Tenants are not deleted, so a tenant once found is
remembered for the life of the process and asked about only once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

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

    async def check(
        self, tenant_ids: Iterable[str]
    ) -> tuple[dict[str, bool], messaging.DependencyUnavailable | None]:
        """Request every tenant not yet known concurrently. Return whether each
        tenant that replied exists, and the error of a request that failed.

        After a restart, a batch of submissions from many tenants would
        otherwise wait for one round trip per tenant, one after the other.
        """
        known: dict[str, bool] = {}
        ask: list[str] = []
        for tenant_id in dict.fromkeys(tenant_ids):
            if tenant_id in self._known:
                known[tenant_id] = True
            else:
                ask.append(tenant_id)
        answers = await asyncio.gather(
            *(self.exists(tenant_id) for tenant_id in ask), return_exceptions=True
        )
        unavailable: messaging.DependencyUnavailable | None = None
        for tenant_id, answer in zip(ask, answers, strict=True):
            if isinstance(answer, messaging.DependencyUnavailable):
                unavailable = answer
            elif isinstance(answer, BaseException):
                raise answer
            else:
                known[tenant_id] = answer
        return known, unavailable
