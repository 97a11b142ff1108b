"""Rate limits on the public link and the form, shared by every replica.

Two kinds of limit, each with settings in `GatewaySettings`:

- Failed link lookups, per client address and per link secret, with
  exponential backoff. A key may fail `free` times without a wait. After
  the n-th failure beyond those, the next attempt waits `base * 2**(n - 1)`
  seconds, up to `max` seconds. In that backoff phase every
  attempt first claims its slot with a compare-and-set, so all replicas
  together let one attempt through per delay. A key is forgotten after a
  quiet `window` (no failure and no block for that long). Only a valid
  secret gets a per-secret key (its person lookup failed), so guessing
  random secrets creates no keys except the address's.
- Accepted submissions per person and per tenant, counted in fixed windows.
  Both are generous: staff behind one shared address are not limited by
  address at all here. Each process adds its accepted submissions up in
  memory and writes the sums in the background (`BatchedCounters`), so
  other replicas see them at most one flush interval late.

A failed-lookup key that this process read or wrote within
`LINK_READ_CACHE_SECONDS` is not read again when the remembered entry
decides the request anyway: no failures, a running block, or a slot that
compare-and-set claims. An entry with some failures below the free ones is
always read again, and every failure is counted with a fresh
compare-and-set.

Keys are keyed hashes (HMAC-SHA256 with the form key) of the secret, the
address or the person, so the bucket holds no secret, address or number.
Every rejection is counted in `linkdesk_rate_limit_hits_total` and logged
once per key and window by each replica.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import msgspec
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.gateway.batched_counters import (
    MAX_SWAP_ATTEMPTS,
    BatchedCounters,
    pause_after_conflict,
)
from services.gateway.settings import GatewaySettings, RateLimitSettings
from services.gateway.shared_state import SharedState, StateUnavailable

logger = logging.getLogger(__name__)

Limit = Literal[
    "link_failures_per_address",
    "link_failures_per_secret",
    "submissions_per_person",
    "submissions_per_tenant",
]

LINK_READ_CACHE_SECONDS = 1.0
"""Age up to which a remembered failed-lookup entry may decide a request."""

MAX_LOGGED_KEYS = 10_000
"""Keys remembered for the once-per-window log line; the oldest go first."""

MAX_REMEMBERED_KEYS = 10_000
"""Person and tenant keys remembered, so that the next post reuses them."""

PERSON_FAILURE_REASONS = frozenset({"unknown_person", "inactive_person"})
"""Rejections after the secret was found valid: these count per secret."""


@dataclass(frozen=True)
class Blocked:
    """A request over a limit, to be rejected with 429 and `Retry-After`."""

    limit: Limit
    retry_after: int


class _Backoff(msgspec.Struct, kw_only=True):
    failures: int
    last: float
    """Unix time of the latest failure."""
    until: float
    """Unix time before which the key's next attempt is refused."""


MAX_REMEMBERED_HOST = 64
"""Maximum length of a client host whose network is remembered. An IPv6
address in text has at most 45 characters."""


def client_network(host: str | None) -> str:
    """Return the address that limits count by: an IPv4 address, or the /64
    network of an IPv6 address, because providers usually assign a whole /64
    to one subscriber."""
    if host is not None and len(host) > MAX_REMEMBERED_HOST:
        return _client_network(host)
    return _remembered_client_network(host)


def _client_network(host: str | None) -> str:
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


# Parsing an address took a few microseconds on every request. Only a host
# taken from X-Forwarded-For behind a trusted proxy can be long.
_remembered_client_network = functools.lru_cache(maxsize=4096)(_client_network)


class RateLimitMetrics:
    """Counters of rejections and of checks that failed open."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "linkdesk_rate_limit_hits",
            "Requests answered with 429 because a rate limit was reached, by limit.",
            ["limit"],
            registry=registry,
        )
        self.unavailable = Counter(
            "linkdesk_rate_limit_unavailable",
            "Rate-limit checks skipped because the key-value bucket did not answer.",
            registry=registry,
        )
        self.pending = Gauge(
            "linkdesk_rate_limit_pending_increments",
            "Increments of the submission limits (one per limit and accepted "
            "submission) not yet written to the key-value bucket.",
            registry=registry,
        )
        for limit in get_args(Limit):
            self.hits.labels(limit)


class RateLimiter:
    """The gateway's rate limits on top of the shared key-value bucket."""

    def __init__(
        self,
        state: SharedState,
        settings: RateLimitSettings,
        hash_key: bytes,
        metrics: RateLimitMetrics,
        clock: Callable[[], float] = time.time,
        *,
        counters: BatchedCounters | None = None,
        read_cache_seconds: float = LINK_READ_CACHE_SECONDS,
    ) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.read_cache_seconds = read_cache_seconds
        self.counters = counters or BatchedCounters(state, clock=clock)
        metrics.pending.set_function(self.counters.pending_total)
        self._keyed_mac = hmac.new(hash_key, digestmod=hashlib.sha256)
        self._logged: dict[str, float] = {}
        self._keys: dict[tuple[str, str], str] = {}

    async def close(self, timeout: float = 2.0) -> None:
        """Write the waiting submission counts, for at most `timeout` seconds."""
        await self.counters.close(timeout)

    def _key(self, kind: str, value: str) -> str:
        # A copy of the keyed HMAC skips the key setup on every request.
        mac = self._keyed_mac.copy()
        mac.update(f"rate-limit\0{kind}\0{value}".encode())
        return f"{kind}.{mac.hexdigest()[:32]}"

    def _remembered_key(self, kind: str, value: str) -> str:
        """Return `_key(kind, value)`, computed once for a recent value.

        Every accepted post needs its person's and its tenant's key twice,
        to check and to count, at a few microseconds per HMAC. Only these
        are kept: a secret or an address stays out of long-lived memory.
        """
        remembered = self._keys.get((kind, value))
        if remembered is not None:
            return remembered
        key = self._key(kind, value)
        if len(self._keys) >= MAX_REMEMBERED_KEYS:
            del self._keys[next(iter(self._keys))]
        self._keys[(kind, value)] = key
        return key

    # --- failed link lookups ------------------------------------------------

    def _delay(self, failures: int, free: int) -> float:
        beyond = failures - free
        if beyond <= 0:
            return 0.0
        delay = self.settings.backoff_base_seconds * 2.0 ** min(beyond - 1, 62)
        return min(delay, float(self.settings.backoff_max_seconds))

    def _stale(self, entry: _Backoff, now: float) -> bool:
        quiet_since = max(entry.last, entry.until)
        return now - quiet_since > self.settings.failure_window_seconds

    def _decides(self, entry: _Backoff | None, free: int) -> bool:
        """Return whether a remembered entry may decide without a fresh read.

        Absent means no failure was seen, and a running block or a claim
        (checked by compare-and-set) are safe to act on. An entry with a few
        failures may have gained more on other replicas, so it is read again.
        """
        if entry is None:
            return True
        now = self.clock()
        if now < entry.until:
            return True
        return entry.failures >= free and not self._stale(entry, now)

    async def _backoff_entry(
        self, key: str, free: int | None = None
    ) -> tuple[_Backoff | None, int]:
        """Return the key's entry and revision, remembered when `free` is None
        (a compare-and-set follows) or the entry decides for `free` failures."""
        remembered = self.state.recent(key, _Backoff, self.read_cache_seconds)
        if remembered is not None and (
            free is None or self._decides(remembered[0], free)
        ):
            return remembered
        return await self.state.get(key, _Backoff, remember=True)

    async def _check_backoff(self, key: str, free: int) -> float | None:
        """Return the seconds to wait, or None when an attempt may go ahead."""
        entry, revision = await self._backoff_entry(key, free)
        for _ in range(MAX_SWAP_ATTEMPTS):
            now = self.clock()
            if entry is None or (now >= entry.until and self._stale(entry, now)):
                return None
            if now < entry.until:
                return entry.until - now
            if entry.failures < free:
                return None
            # In the backoff phase each attempt claims the next slot, so that
            # concurrent requests on any replica get one attempt per delay.
            claimed = _Backoff(
                failures=entry.failures,
                last=entry.last,
                until=now + self._delay(entry.failures + 1, free),
            )
            if await self.state.swap(key, claimed, revision) is not None:
                return None
            entry, revision = await self.state.get(
                key, _Backoff, leader=True, remember=True
            )
        # Other requests kept claiming the key: this one waits for the next.
        return 1.0

    async def _record_failure(self, key: str, free: int) -> None:
        # A remembered entry is only the first guess: compare-and-set rejects
        # it if the key changed since, and the loop reads it again.
        entry, revision = await self._backoff_entry(key)
        for attempt in range(1, MAX_SWAP_ATTEMPTS + 1):
            now = self.clock()
            if entry is None or (now >= entry.until and self._stale(entry, now)):
                failures, until = 1, 0.0
            else:
                failures, until = entry.failures + 1, entry.until
            updated = _Backoff(
                failures=failures,
                last=now,
                until=max(until, now + self._delay(failures, free)),
            )
            if await self.state.swap(key, updated, revision) is not None:
                return
            await pause_after_conflict(attempt)
            entry, revision = await self.state.get(
                key, _Backoff, leader=True, remember=True
            )
        logger.warning(
            "failed link lookup not counted: the key kept changing",
            extra={"event": "rate_limit_write_conflict", "key": key},
        )

    def _link_keys(
        self, address: str, secret: str | None
    ) -> list[tuple[Limit, str, int]]:
        keys: list[tuple[Limit, str, int]] = []
        if self.settings.failures_per_address:
            keys.append(
                (
                    "link_failures_per_address",
                    self._key("address", address),
                    self.settings.failures_per_address,
                )
            )
        if secret is not None and self.settings.failures_per_secret:
            keys.append(
                (
                    "link_failures_per_secret",
                    self._key("secret", secret),
                    self.settings.failures_per_secret,
                )
            )
        return keys

    async def check_link(self, address: str, secret: str | None) -> Blocked | None:
        """Return `Blocked` when this address or secret has to wait."""
        try:
            for limit, key, free in self._link_keys(address, secret):
                wait = await self._check_backoff(key, free)
                if wait is not None:
                    return self._blocked(limit, key, wait)
        except StateUnavailable:
            self.metrics.unavailable.inc()
        return None

    async def record_link_failure(
        self, address: str, secret: str | None, reason: str
    ) -> None:
        """Count a link that opened nothing against its address, and against
        its secret when the secret itself was valid."""
        counted = secret if reason in PERSON_FAILURE_REASONS else None
        try:
            for _, key, free in self._link_keys(address, counted):
                await self._record_failure(key, free)
        except StateUnavailable:
            self.metrics.unavailable.inc()

    # --- submissions --------------------------------------------------------

    def _submission_keys(
        self, tenant_id: str, personnel_number: str, now: float
    ) -> tuple[int, list[tuple[Limit, str, int]]]:
        window = int(now // self.settings.submission_window_seconds)
        keys: list[tuple[Limit, str, int]] = []
        if self.settings.submissions_per_person:
            person = self._remembered_key("person", f"{tenant_id}\0{personnel_number}")
            keys.append(
                (
                    "submissions_per_person",
                    f"{person}.{window}",
                    self.settings.submissions_per_person,
                )
            )
        if self.settings.submissions_per_tenant:
            keys.append(
                (
                    "submissions_per_tenant",
                    f"{self._remembered_key('tenant', tenant_id)}.{window}",
                    self.settings.submissions_per_tenant,
                )
            )
        return window, keys

    async def check_submission(
        self, tenant_id: str, personnel_number: str
    ) -> Blocked | None:
        """Return `Blocked` when the person or the tenant used up the window.

        Compares the bucket's count plus this process's unwritten increments
        with each limit.
        """
        now = self.clock()
        since = time.monotonic()
        window, keys = self._submission_keys(tenant_id, personnel_number, now)
        window_end = (window + 1) * self.settings.submission_window_seconds
        try:
            counts = await self._counts([key for _, key, _ in keys], window_end, since)
        except StateUnavailable:
            self.metrics.unavailable.inc()
            return None
        for (limit, key, maximum), count in zip(keys, counts, strict=True):
            if count >= maximum:
                return self._blocked(limit, key, window_end - now)
        return None

    async def _counts(
        self, keys: list[str], window_end: float, since: float
    ) -> list[int]:
        """Return the counts of `keys`, read concurrently, each from a read
        that began after `since`.

        The first read is awaited here and the others run as tasks beside
        it. `asyncio.gather` would wait the same way, but it took about three
        times the CPU for two keys in a microbenchmark.
        """
        if not keys:
            return []
        loop = asyncio.get_running_loop()
        others = [
            loop.create_task(self.counters.value(key, window_end, since=since))
            for key in keys[1:]
        ]
        try:
            first = await self.counters.value(keys[0], window_end, since=since)
        except BaseException:
            # As gather would, stop the other reads. They are awaited, so no
            # task ends with an error that is never read.
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            raise
        return [first, *[await task for task in others]]

    async def count_submission(self, tenant_id: str, personnel_number: str) -> None:
        """Count one accepted submission for the person and the tenant.

        Returns at once: the counts reach the bucket in the background.
        """
        now = self.clock()
        window, keys = self._submission_keys(tenant_id, personnel_number, now)
        window_end = (window + 1) * self.settings.submission_window_seconds
        for _, key, _ in keys:
            self.counters.add(key, window_end)

    # --- rejections ----------------------------------------------------------

    def _blocked(self, limit: Limit, key: str, wait: float) -> Blocked:
        retry_after = max(1, math.ceil(wait))
        self.metrics.hits.labels(limit).inc()
        self._log_once(limit, key, retry_after)
        return Blocked(limit=limit, retry_after=retry_after)

    def _log_once(self, limit: Limit, key: str, retry_after: int) -> None:
        now = self.clock()
        window = (
            self.settings.submission_window_seconds
            if limit.startswith("submissions")
            else self.settings.failure_window_seconds
        )
        logged_at = self._logged.get(key)
        if logged_at is not None and now - logged_at < window:
            return
        self._logged.pop(key, None)
        self._logged[key] = now
        while len(self._logged) > MAX_LOGGED_KEYS:
            del self._logged[next(iter(self._logged))]
        logger.warning(
            "rate limit reached",
            extra={
                "event": "rate_limit_reached",
                "limit": limit,
                "key": key,
                "retry_after_seconds": retry_after,
            },
        )


def build(
    nc: Client, settings: GatewaySettings, registry: CollectorRegistry
) -> tuple[SharedState, RateLimiter]:
    """Return the shared bucket and the rate limiter of a gateway process."""
    state = SharedState(
        nc,
        settings.state_bucket,
        ttl_seconds=settings.state_ttl_seconds,
        timeout=settings.state_timeout,
        replicas=settings.state_replicas,
    )
    limiter = RateLimiter(
        state, settings.rate_limits, settings.form_key, RateLimitMetrics(registry)
    )
    return state, limiter
