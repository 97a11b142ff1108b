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
  address at all here.

Keys are keyed hashes (HMAC-SHA256 with the form key) of the secret, the
address or the person, so the bucket holds no secret, address or number.
Every rejection is counted in `linkdesk_rate_limit_hits_total` and logged
once per key and window by each replica.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import msgspec
from nats.aio.client import Client
from prometheus_client import CollectorRegistry, Counter

from services.gateway.settings import GatewaySettings, RateLimitSettings
from services.gateway.shared_state import SharedState, StateUnavailable

logger = logging.getLogger(__name__)

Limit = Literal[
    "link_failures_per_address",
    "link_failures_per_secret",
    "submissions_per_person",
    "submissions_per_tenant",
]

MAX_SWAP_ATTEMPTS = 10
"""Compare-and-set attempts on one key before giving up on a write."""

SWAP_JITTER_SECONDS = 0.005
"""Upper bound of the random pause after a lost compare-and-set, times the
attempt number, so that writers that collided do not collide again."""

MAX_LOGGED_KEYS = 10_000
"""Keys remembered for the once-per-window log line; the oldest go first."""

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


class _Count(msgspec.Struct, kw_only=True):
    count: int


def client_network(host: str | None) -> str:
    """Return the address that limits count by: an IPv4 address, or the /64
    network of an IPv6 address, because providers usually assign a whole /64
    to one subscriber."""
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


async def _pause(attempt: int) -> None:
    # Not a secret: jitter only spreads colliding writers apart.
    await asyncio.sleep(random.uniform(0, SWAP_JITTER_SECONDS * attempt))  # noqa: S311


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
    ) -> None:
        self.state = state
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self._hash_key = hash_key
        self._logged: dict[str, float] = {}

    def _key(self, kind: str, value: str) -> str:
        digest = hmac.new(
            self._hash_key,
            f"rate-limit\0{kind}\0{value}".encode(),
            hashlib.sha256,
        ).hexdigest()
        return f"{kind}.{digest[:32]}"

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

    async def _check_backoff(self, key: str, free: int) -> float | None:
        """Return the seconds to wait, or None when an attempt may go ahead."""
        for _ in range(MAX_SWAP_ATTEMPTS):
            now = self.clock()
            entry, revision = await self.state.get(key, _Backoff)
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
            if await self.state.swap(key, claimed, revision):
                return None
        # Other requests kept claiming the key: this one waits for the next.
        return 1.0

    async def _record_failure(self, key: str, free: int) -> None:
        for attempt in range(1, MAX_SWAP_ATTEMPTS + 1):
            now = self.clock()
            entry, revision = await self.state.get(key, _Backoff)
            if entry is None or (now >= entry.until and self._stale(entry, now)):
                failures, until = 1, 0.0
            else:
                failures, until = entry.failures + 1, entry.until
            updated = _Backoff(
                failures=failures,
                last=now,
                until=max(until, now + self._delay(failures, free)),
            )
            if await self.state.swap(key, updated, revision):
                return
            await _pause(attempt)
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
            person = self._key("person", f"{tenant_id}\0{personnel_number}")
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
                    f"{self._key('tenant', tenant_id)}.{window}",
                    self.settings.submissions_per_tenant,
                )
            )
        return window, keys

    async def check_submission(
        self, tenant_id: str, personnel_number: str
    ) -> Blocked | None:
        """Return `Blocked` when the person or the tenant used up the window."""
        now = self.clock()
        window, keys = self._submission_keys(tenant_id, personnel_number, now)
        window_end = (window + 1) * self.settings.submission_window_seconds
        try:
            for limit, key, maximum in keys:
                entry, _ = await self.state.get(key, _Count)
                if entry is not None and entry.count >= maximum:
                    return self._blocked(limit, key, window_end - now)
        except StateUnavailable:
            self.metrics.unavailable.inc()
        return None

    async def count_submission(self, tenant_id: str, personnel_number: str) -> None:
        """Count one accepted submission for the person and the tenant."""
        _, keys = self._submission_keys(tenant_id, personnel_number, self.clock())
        try:
            for _, key, _ in keys:
                await self._increment(key)
        except StateUnavailable:
            self.metrics.unavailable.inc()

    async def _increment(self, key: str) -> None:
        for attempt in range(1, MAX_SWAP_ATTEMPTS + 1):
            entry, revision = await self.state.get(key, _Count)
            count = 1 if entry is None else entry.count + 1
            if await self.state.swap(key, _Count(count=count), revision):
                return
            await _pause(attempt)
        logger.warning(
            "submission not counted: the key kept changing",
            extra={"event": "rate_limit_write_conflict", "key": key},
        )

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
