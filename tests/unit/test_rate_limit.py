"""Rate limits against a real JetStream key-value bucket, with a test clock.

Each test gets a bucket of its own. Two `RateLimiter`s on one bucket stand
for two gateway replicas. The clock is a parameter of the limiter, so the
backoff schedule is checked to the second without waiting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from services.gateway import form_ledger
from services.gateway.rate_limit import (
    RateLimiter,
    RateLimitMetrics,
    client_network,
)
from services.gateway.settings import RateLimitSettings
from services.gateway.shared_state import SharedState

HASH_KEY = b"k" * 32
ADDRESS = "203.0.113.7"
SECRET = "k7Q2xLm9Rt4vZp1W"

LIMITS = RateLimitSettings(
    failures_per_address=3,
    failures_per_secret=5,
    failure_window_seconds=600,
    backoff_base_seconds=1.0,
    backoff_max_seconds=60,
    submissions_per_person=2,
    submissions_per_tenant=3,
    submission_window_seconds=3600,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def bucket() -> str:
    return f"rate_limit_test_{uuid.uuid4().hex}"


def limiter(
    nc: Client,
    bucket: str,
    clock: Clock,
    limits: RateLimitSettings = LIMITS,
    registry: CollectorRegistry | None = None,
) -> RateLimiter:
    state = SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0)
    metrics = RateLimitMetrics(registry or CollectorRegistry())
    return RateLimiter(state, limits, HASH_KEY, metrics, clock)


async def fail(rl: RateLimiter, times: int, reason: str = "unknown_secret") -> None:
    for _ in range(times):
        await rl.record_link_failure(ADDRESS, SECRET, reason)


async def test_free_failures_then_backoff(nc: Client, bucket: str) -> None:
    clock = Clock()
    rl = limiter(nc, bucket, clock)

    await fail(rl, 3)
    assert await rl.check_link(ADDRESS, SECRET) is None

    # The first attempt beyond the free ones claims its slot; the next waits.
    blocked = await rl.check_link(ADDRESS, SECRET)
    assert blocked is not None
    assert blocked.limit == "link_failures_per_address"
    assert blocked.retry_after == 1


async def test_backoff_doubles_up_to_maximum(nc: Client, bucket: str) -> None:
    clock = Clock()
    rl = limiter(nc, bucket, clock)
    await fail(rl, 3)

    waits = []
    for _ in range(9):
        await fail(rl, 1)
        blocked = await rl.check_link(ADDRESS, None)
        assert blocked is not None
        waits.append(blocked.retry_after)
        clock.now += blocked.retry_after
        assert await rl.check_link(ADDRESS, None) is None
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


async def test_enumeration_slowed_within_dozens(nc: Client, bucket: str) -> None:
    # Default-like limits: 10 free failures, then 1 s doubling to an hour.
    limits = RateLimitSettings(
        failures_per_address=10,
        failures_per_secret=20,
        failure_window_seconds=900,
        backoff_base_seconds=1.0,
        backoff_max_seconds=3600,
        submissions_per_person=20,
        submissions_per_tenant=1000,
        submission_window_seconds=3600,
    )
    clock = Clock()
    rl = limiter(nc, bucket, clock, limits)
    attempts = 0
    # An attacker who always waits exactly the Retry-After time.
    while clock.now - 1_800_000_000.0 < 24 * 3600 and attempts < 1000:
        blocked = await rl.check_link(ADDRESS, None)
        if blocked is not None:
            clock.now += blocked.retry_after
            continue
        attempts += 1
        await fail(rl, 1)
    # 10 free, then 1+2+…+2048 s is about 68 minutes, then one per hour.
    assert attempts < 50


async def test_replicas_share_failures(nc: Client, bucket: str) -> None:
    clock = Clock()
    first, second = limiter(nc, bucket, clock), limiter(nc, bucket, clock)
    await fail(first, 2)
    await fail(second, 2)

    assert await first.check_link(ADDRESS, None) is not None
    assert await second.check_link(ADDRESS, None) is not None


async def test_claim_lets_one_replica_through(nc: Client, bucket: str) -> None:
    clock = Clock()
    first, second = limiter(nc, bucket, clock), limiter(nc, bucket, clock)
    await fail(first, 4)
    clock.now += 10

    assert await first.check_link(ADDRESS, None) is None
    assert await second.check_link(ADDRESS, None) is not None


async def test_other_address_not_blocked(nc: Client, bucket: str) -> None:
    clock = Clock()
    rl = limiter(nc, bucket, clock)
    await fail(rl, 4)

    assert await rl.check_link(ADDRESS, None) is not None
    assert await rl.check_link("198.51.100.1", None) is None


async def test_failures_forgotten_after_quiet_window(nc: Client, bucket: str) -> None:
    clock = Clock()
    rl = limiter(nc, bucket, clock)
    await fail(rl, 5)
    blocked = await rl.check_link(ADDRESS, None)
    assert blocked is not None

    clock.now += blocked.retry_after + LIMITS.failure_window_seconds + 1
    await fail(rl, 3)
    assert await rl.check_link(ADDRESS, None) is None


async def test_secret_counts_only_person_failures(nc: Client, bucket: str) -> None:
    clock = Clock()
    limits = RateLimitSettings(**{**LIMITS.__dict__, "failures_per_address": 0})
    rl = limiter(nc, bucket, clock, limits)

    await fail(rl, 10, reason="unknown_secret")
    assert await rl.check_link(ADDRESS, SECRET) is None

    await fail(rl, 6, reason="unknown_person")
    blocked = await rl.check_link("198.51.100.9", SECRET)
    assert blocked is not None
    assert blocked.limit == "link_failures_per_secret"
    assert await rl.check_link(ADDRESS, "another secret") is None


async def test_limit_of_zero_is_off(nc: Client, bucket: str) -> None:
    clock = Clock()
    off = RateLimitSettings(
        **{**LIMITS.__dict__, "failures_per_address": 0, "failures_per_secret": 0}
    )
    rl = limiter(nc, bucket, clock, off)
    await fail(rl, 50, reason="unknown_person")
    assert await rl.check_link(ADDRESS, SECRET) is None


async def test_submissions_counted_per_window(nc: Client, bucket: str) -> None:
    clock = Clock(1_800_000_000.0 - 1_800_000_000.0 % 3600)
    rl = limiter(nc, bucket, clock)
    tenant = str(uuid.uuid4())

    await rl.count_submission(tenant, "004711")
    assert await rl.check_submission(tenant, "004711") is None
    await rl.count_submission(tenant, "004711")
    blocked = await rl.check_submission(tenant, "004711")
    assert blocked is not None
    assert blocked.limit == "submissions_per_person"
    assert blocked.retry_after == 3600

    # Another person of the tenant still has room, until the tenant's third.
    assert await rl.check_submission(tenant, "000815") is None
    await rl.count_submission(tenant, "000815")
    tenant_blocked = await rl.check_submission(tenant, "000815")
    assert tenant_blocked is not None
    assert tenant_blocked.limit == "submissions_per_tenant"

    clock.now += 3600
    assert await rl.check_submission(tenant, "004711") is None


async def test_concurrent_counts_not_lost(nc: Client, bucket: str) -> None:
    clock = Clock()
    limits = RateLimitSettings(
        **{
            **LIMITS.__dict__,
            "submissions_per_person": 10,
            "submissions_per_tenant": 100,
        }
    )
    replicas = [limiter(nc, bucket, clock, limits) for _ in range(3)]
    tenant = str(uuid.uuid4())
    await asyncio.gather(
        *(rl.count_submission(tenant, "004711") for rl in replicas for _ in range(3))
    )
    assert await replicas[0].check_submission(tenant, "004711") is None
    await replicas[0].count_submission(tenant, "004711")
    assert await replicas[1].check_submission(tenant, "004711") is not None


async def test_unreachable_bucket_fails_open(nats_url: str, bucket: str) -> None:
    client = await nats.connect(nats_url, connect_timeout=5)
    clock = Clock()
    registry = CollectorRegistry()
    rl = limiter(client, bucket, clock, registry=registry)
    await fail(rl, 5)
    assert await rl.check_link(ADDRESS, None) is not None
    hits = registry.get_sample_value(
        "linkdesk_rate_limit_hits_total", {"limit": "link_failures_per_address"}
    )
    assert hits == 1
    await client.close()

    assert await rl.check_link(ADDRESS, None) is None
    await rl.record_link_failure(ADDRESS, None, "unknown_secret")
    skipped = registry.get_sample_value("linkdesk_rate_limit_unavailable_total")
    assert skipped == 2


async def test_ledger_keeps_first_record(nc: Client, bucket: str) -> None:
    state = SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0)
    submission_id = str(uuid.uuid4())
    assert await form_ledger.find(state, submission_id) is None

    first = form_ledger.AcceptedForm(reference="T-AAAAA-AAAAA", values_digest="1")
    second = form_ledger.AcceptedForm(reference="T-BBBBB-BBBBB", values_digest="2")
    await form_ledger.record(state, submission_id, first)
    await form_ledger.record(state, submission_id, second)
    found = await form_ledger.find(state, submission_id)
    assert found is not None
    assert found.reference == "T-AAAAA-AAAAA"


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("testclient", "testclient"),
    ],
)
def test_client_network(host: str | None, network: str) -> None:
    assert client_network(host) == network
