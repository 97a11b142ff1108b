"""Rate limits against a real JetStream key-value bucket, with a test clock.

Each test gets a bucket of its own. Two `RateLimiter`s on one bucket stand
for two gateway replicas. The clock is a parameter of the limiter, so the
backoff schedule is checked to the second without waiting. Submission
counts reach the bucket in the background, so tests that read another
replica's counts first flush them with `flush()`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar, cast

import nats
import pytest
from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from services.gateway import batched_counters, rate_limit
from services.gateway.batched_counters import BatchedCounters
from services.gateway.rate_limit import (
    RateLimiter,
    RateLimitMetrics,
    client_network,
)
from services.gateway.settings import RateLimitSettings
from services.gateway.shared_state import SharedState, StateUnavailable

T = TypeVar("T")

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


_open_limiters: list[RateLimiter] = []


async def close_limiters() -> None:
    """Stop the background writers of every limiter a test made."""
    while _open_limiters:
        await _open_limiters.pop().close(timeout=2.0)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Client]:
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        yield client
    finally:
        await close_limiters()
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
    state: SharedState | None = None,
    flush_after: int = 100,
) -> RateLimiter:
    state = state or SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0)
    metrics = RateLimitMetrics(registry or CollectorRegistry())
    counters = BatchedCounters(state, flush_after=flush_after, clock=clock)
    rate_limiter = RateLimiter(
        state, limits, HASH_KEY, metrics, clock, counters=counters
    )
    _open_limiters.append(rate_limiter)
    return rate_limiter


class CountingState(SharedState):
    """The real bucket, counting reads and writes."""

    def __init__(
        self, nc: Client, bucket: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(nc, bucket, ttl_seconds=7200, timeout=2.0, clock=clock)
        self.reads = 0
        self.writes = 0

    async def get(
        self, key: str, kind: type[T], *, leader: bool = False, remember: bool = False
    ) -> tuple[T | None, int]:
        self.reads += 1
        return await super().get(key, kind, leader=leader, remember=remember)

    async def swap(self, key: str, value: object, revision: int) -> int | None:
        self.writes += 1
        return await super().swap(key, value, revision)


class FailingWrites(SharedState):
    """The real bucket, whose first `failures` writes raise `StateUnavailable`.

    `stored=True` writes the value before raising, as when the bucket stored
    a write and its acknowledgement got lost.
    """

    def __init__(self, nc: Client, bucket: str, failures: int, *, stored: bool) -> None:
        super().__init__(nc, bucket, ttl_seconds=7200, timeout=2.0)
        self.failures_left = failures
        self.stored = stored

    async def swap(self, key: str, value: object, revision: int) -> int | None:
        if self.failures_left <= 0:
            return await super().swap(key, value, revision)
        self.failures_left -= 1
        if self.stored:
            await super().swap(key, value, revision)
        raise StateUnavailable("simulated failure", write_uncertain=True)


async def flush_all(limiters: list[RateLimiter]) -> None:
    for rl in limiters:
        await rl.counters.flush()


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
    await flush_all(replicas)
    assert await replicas[0].check_submission(tenant, "004711") is None
    await replicas[0].count_submission(tenant, "004711")
    await flush_all(replicas)
    assert await replicas[1].check_submission(tenant, "004711") is not None


async def count_of(
    nc: Client, bucket: str, clock: Clock, tenant: str, expected: int
) -> tuple[bool, bool]:
    """Return whether a new replica finds at least `expected` and at least
    `expected + 1` submissions of the person in the bucket."""
    results = []
    for limit in (expected, expected + 1):
        limits = RateLimitSettings(
            **{
                **LIMITS.__dict__,
                "submissions_per_person": limit,
                "submissions_per_tenant": 0,
            }
        )
        reader = limiter(nc, bucket, clock, limits)
        results.append(await reader.check_submission(tenant, "004711") is not None)
    return results[0], results[1]


async def test_two_replicas_count_exactly(nc: Client, bucket: str) -> None:
    clock = Clock()
    unlimited = RateLimitSettings(
        **{
            **LIMITS.__dict__,
            "submissions_per_person": 10**9,
            "submissions_per_tenant": 10**9,
        }
    )
    # One write per increment makes the two replicas' writes collide.
    replicas = [
        limiter(nc, bucket, clock, unlimited, flush_after=1),
        limiter(nc, bucket, clock, unlimited, flush_after=1),
    ]
    tenant = str(uuid.uuid4())
    submissions = 300

    async def accept(number: int) -> None:
        rl = replicas[number % 2]
        assert await rl.check_submission(tenant, "004711") is None
        await asyncio.sleep(0)
        await rl.count_submission(tenant, "004711")

    await asyncio.gather(*(accept(number) for number in range(submissions)))
    await flush_all(replicas)

    assert [rl.counters.pending_total() for rl in replicas] == [0, 0]
    at_least, more = await count_of(nc, bucket, clock, tenant, submissions)
    assert at_least, f"fewer than {submissions} submissions counted"
    assert not more, f"more than {submissions} submissions counted"


async def test_concurrent_counts_batched(nc: Client, bucket: str) -> None:
    clock = Clock()
    state = CountingState(nc, bucket)
    rl = limiter(nc, bucket, clock, state=state)
    tenant = str(uuid.uuid4())

    await asyncio.gather(*(rl.count_submission(tenant, "004711") for _ in range(50)))
    await rl.counters.flush()

    # One write for the person's key and one for the tenant's.
    assert state.writes == 2
    at_least, more = await count_of(nc, bucket, clock, tenant, 50)
    assert at_least
    assert not more


async def test_check_counts_unwritten(nc: Client, bucket: str) -> None:
    clock = Clock()
    state = FailingWrites(nc, bucket, failures=100, stored=False)
    person_only = RateLimitSettings(**{**LIMITS.__dict__, "submissions_per_tenant": 0})
    rl = limiter(nc, bucket, clock, person_only, state=state)
    tenant = str(uuid.uuid4())

    await rl.count_submission(tenant, "004711")
    await rl.counters.flush()
    assert await rl.check_submission(tenant, "004711") is None
    await rl.count_submission(tenant, "004711")
    await rl.counters.flush()

    assert rl.counters.pending_total() == 2
    blocked = await rl.check_submission(tenant, "004711")
    assert blocked is not None
    assert blocked.limit == "submissions_per_person"


@pytest.mark.parametrize("stored", [False, True], ids=["not_stored", "ack_lost"])
async def test_failed_write_counted_once(nc: Client, bucket: str, stored: bool) -> None:
    clock = Clock()
    state = FailingWrites(nc, bucket, failures=2, stored=stored)
    rl = limiter(nc, bucket, clock, state=state)
    tenant = str(uuid.uuid4())
    for _ in range(5):
        await rl.count_submission(tenant, "004711")

    for _ in range(5):
        await rl.counters.flush()
        if rl.counters.pending_total() == 0:
            break

    assert rl.counters.pending_total() == 0
    at_least, more = await count_of(nc, bucket, clock, tenant, 5)
    assert at_least, "a submission was lost"
    assert not more, "a submission was counted twice"


async def test_clean_address_read_once(nc: Client, bucket: str) -> None:
    clock = Clock()
    monotonic = Clock(100.0)
    state = CountingState(nc, bucket, clock=monotonic)
    rl = limiter(nc, bucket, clock, state=state)

    assert await rl.check_link(ADDRESS, SECRET) is None
    assert state.reads == 2
    assert await rl.check_link(ADDRESS, SECRET) is None
    assert state.reads == 2

    monotonic.now += 1.5
    assert await rl.check_link(ADDRESS, SECRET) is None
    assert state.reads == 4


async def test_failure_seen_despite_remembered_read(nc: Client, bucket: str) -> None:
    clock = Clock()
    first, second = limiter(nc, bucket, clock), limiter(nc, bucket, clock)
    # `first` remembers the address without failures, then `second` counts
    # some; `first`'s own next failure is counted on top of them.
    assert await first.check_link(ADDRESS, None) is None
    await fail(second, 3)
    await fail(first, 1)

    assert await first.check_link(ADDRESS, None) is not None
    assert await second.check_link(ADDRESS, None) is not None


async def test_bucket_switched_to_direct_get(nc: Client, bucket: str) -> None:
    js = nc.jetstream(timeout=2.0)
    await js.create_key_value(bucket=bucket, history=1, ttl=7200)
    before = await js.stream_info(f"KV_{bucket}")
    assert not before.config.allow_direct

    state = SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0)
    assert await state.get("some.key", dict) == (None, 0)

    after = await js.stream_info(f"KV_{bucket}")
    assert after.config.allow_direct


async def test_new_bucket_allows_direct_get(nc: Client, bucket: str) -> None:
    state = SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0)
    assert await state.get("some.key", dict) == (None, 0)

    info = await nc.jetstream(timeout=2.0).stream_info(f"KV_{bucket}")
    assert info.config.allow_direct


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
    await close_limiters()


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


async def test_counts_of_many_people_written(nc: Client, bucket: str) -> None:
    """Counts of more people than the background task writes in one round
    all reach the bucket, without a flush from outside."""
    clock = Clock()
    state = CountingState(nc, bucket)
    counters = BatchedCounters(state, flush_interval=0.01, clock=clock)
    keys = [f"person.{index}" for index in range(300)]

    for key in keys:
        counters.add(key, clock() + 3600)
    for _ in range(500):
        if counters.pending_total() == 0:
            break
        await asyncio.sleep(0.01)
    await counters.close(timeout=2.0)

    assert counters.pending_total() == 0
    assert state.writes == len(keys)
    for key in keys[:: len(keys) // 10]:
        assert await counters.value(key, clock() + 3600) == 1


async def test_full_counters_free_a_tenth(
    nc: Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys with nothing to write are dropped in bulk once the room is full,
    so the search for them runs once per tenth of the room."""
    monkeypatch.setattr(batched_counters, "MAX_COUNTERS", 50)
    clock = Clock()
    counters = BatchedCounters(
        SharedState(nc, bucket, ttl_seconds=7200, timeout=2.0), clock=clock
    )
    sizes = []

    for index in range(120):
        await counters.value(f"person.{index}", clock() + 3600)
        sizes.append(len(counters._counters))

    assert max(sizes) == 50
    assert sizes[50] == 46
    await counters.close(timeout=2.0)


async def test_hashed_keys_remembered_within_bound(
    nc: Client, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limit, "MAX_REMEMBERED_KEYS", 3)
    rl = limiter(nc, bucket, Clock())
    other = limiter(nc, bucket, Clock())

    first = rl._remembered_key("person", "t\x00004711")
    for number in ("000815", "000816", "000817", "000818"):
        rl._remembered_key("person", f"t\x00{number}")
    await rl.check_link(ADDRESS, SECRET)

    # The bound is kept, and no address or secret is remembered.
    assert len(rl._keys) == 3
    assert all(kind == "person" for kind, _ in rl._keys)
    # A forgotten key is hashed again to the same value; a fresh limiter
    # with the same form key computes the same one.
    assert rl._remembered_key("person", "t\x00004711") == first
    assert other._remembered_key("person", "t\x00004711") == first
    assert first.startswith("person.")


async def test_check_reads_both_keys_again(nc: Client, bucket: str) -> None:
    clock = Clock()
    state = CountingState(nc, bucket)
    rl = limiter(nc, bucket, clock, state=state)
    writer = limiter(nc, bucket, clock)
    tenant = str(uuid.uuid4())

    assert await rl.check_submission(tenant, "004711") is None
    assert state.reads == 2
    # Another replica fills the person's window. The next check reads both
    # keys again rather than reusing the counts of the first check.
    await writer.count_submission(tenant, "004711")
    await writer.count_submission(tenant, "004711")
    await writer.counters.flush()
    blocked = await rl.check_submission(tenant, "004711")

    assert state.reads == 4
    assert blocked is not None
    assert blocked.limit == "submissions_per_person"


def test_long_client_host_not_remembered() -> None:
    remembered = rate_limit._remembered_client_network
    before = remembered.cache_info().currsize
    long_host = "h" * (rate_limit.MAX_REMEMBERED_HOST + 1)
    assert client_network(long_host) == long_host
    assert remembered.cache_info().currsize == before


def test_limit_keys_stay_the_same() -> None:
    # Replicas of two releases share the bucket during a rolling upgrade,
    # so the keys must not change with the code that computes them.
    keyed = RateLimiter(
        cast(SharedState, None),
        LIMITS,
        bytes(range(32)),
        RateLimitMetrics(CollectorRegistry()),
    )
    assert keyed._key("address", "203.0.113.7") == (
        "address.c6f689ebe806a3d9a2b798522e4db793"
    )
    assert keyed._remembered_key("person", "t1\0" + "004711") == (
        "person.2d9e4bbfda990d39d97b9eacb1654921"
    )
