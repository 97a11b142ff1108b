"""The ticket service requests the tenants of a batch concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from services.ticket.tenants import TenantDirectory
from shared import messages, messaging, subjects
from shared.embedded import EmbeddedNats

TENANTS = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(1, 6)]
UNKNOWN = TENANTS[-1]


@pytest.fixture
async def nc(own_nats: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(own_nats.url)
    yield client
    await client.close()


class GatedTenantService:
    """Stand-in tenant service that replies to `GetTenant` once `expected`
    requests wait at the same time, or after `patience` seconds, and counts
    the maximum that waited."""

    def __init__(self, expected: int, patience: float = 2.0) -> None:
        self.expected = expected
        self.patience = patience
        self.waiting = 0
        self.max_waiting = 0
        self.asked: list[str] = []
        self._all_here = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_request(self, msg: Msg) -> None:
        task = asyncio.create_task(self._answer(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Msg) -> None:
        tenant_id = msgspec.json.decode(msg.data, type=messages.GetTenant).tenant_id
        self.asked.append(tenant_id)
        self.waiting += 1
        self.max_waiting = max(self.max_waiting, self.waiting)
        if self.waiting >= self.expected:
            self._all_here.set()
        try:
            async with asyncio.timeout(self.patience):
                await self._all_here.wait()
        except TimeoutError:
            pass
        self.waiting -= 1
        if tenant_id == UNKNOWN:
            reply = messages.TenantResolved(reason="unknown_tenant")
        else:
            reply = messages.TenantResolved(
                tenant=messages.TenantForm(
                    tenant_id=tenant_id,
                    name="Muster AG",
                    language="de",
                    categories=["IT"],
                )
            )
        await msg.respond(messages.ENCODER.encode(reply))


async def test_batch_tenants_requested_concurrently(nc: Client) -> None:
    service = GatedTenantService(expected=len(TENANTS))
    await nc.subscribe(subjects.TENANT_GET, cb=service.on_request)
    directory = TenantDirectory(nc, timeout=5.0)

    # Each tenant twice, as in a batch with several tickets per tenant.
    known, unavailable = await directory.check(TENANTS + TENANTS)

    assert unavailable is None
    assert service.max_waiting == len(TENANTS)
    assert sorted(service.asked) == sorted(TENANTS)
    assert known == {tenant_id: tenant_id != UNKNOWN for tenant_id in TENANTS}

    # Known tenants are not requested again, but the unknown one is.
    known, _ = await directory.check(TENANTS)
    assert known[TENANTS[0]] is True
    assert service.asked.count(TENANTS[0]) == 1
    assert service.asked.count(UNKNOWN) == 2


async def test_replies_kept_when_service_stops(
    nc: Client,
) -> None:
    service = GatedTenantService(expected=1)
    subscription = await nc.subscribe(subjects.TENANT_GET, cb=service.on_request)
    directory = TenantDirectory(nc, timeout=1.0)
    known, unavailable = await directory.check(TENANTS[:1])
    assert known == {TENANTS[0]: True}
    assert unavailable is None

    await subscription.unsubscribe()
    known, unavailable = await directory.check(TENANTS[:3])

    assert known == {TENANTS[0]: True}
    assert isinstance(unavailable, messaging.DependencyUnavailable)


async def test_silent_tenant_keeps_other_replies(nc: Client) -> None:
    service = GatedTenantService(expected=1)
    silent = TENANTS[1]

    async def on_request(msg: Msg) -> None:
        request = msgspec.json.decode(msg.data, type=messages.GetTenant)
        if request.tenant_id != silent:
            await service.on_request(msg)

    await nc.subscribe(subjects.TENANT_GET, cb=on_request)
    directory = TenantDirectory(nc, timeout=1.0)

    known, unavailable = await directory.check(TENANTS)

    assert isinstance(unavailable, messaging.DependencyUnavailable)
    assert unavailable.reason == "timeout"
    assert silent not in known
    assert known == {
        tenant_id: tenant_id != UNKNOWN for tenant_id in TENANTS if tenant_id != silent
    }
