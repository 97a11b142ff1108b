"""The gateway's in-process cache of successful tenant and person lookups.

Successful lookups are cached for `GATEWAY_CACHE_TTL_SECONDS` (default 30,
0 switches the cache off): those of opened links, and those of the
submit-time recheck, so that a busy gateway posts a form without asking
another service. Change events drop what they may have made stale, so a
revoked secret or key, a disabled intake or a deactivated person stops
opening links and posting forms as soon as the event arrives:

- a `TenantChanged` drops every entry of its tenant;
- a `PersonChanged` that names one person drops that person's entry only;
- any other `PersonChanged`, such as an import's, drops the tenant's people
  and keeps its tenants by secret and tenant checks, because the personnel
  service changes no tenant data;
- an event that cannot be decoded drops every entry of its tenant.

Events travel on core NATS and can be missed, so the TTL bounds how long a
missed change can go unseen, and a reconnect to NATS clears the whole cache.
An entry never outlives the secret or key it was checked with. Rejections
and failures are never cached, and neither are signed-link verifications.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import directory_events, json_errors, messages, subjects
from shared.settings import env_float

logger = logging.getLogger(__name__)

DEFAULT_CACHE_TTL_SECONDS = 30.0

MAX_CACHE_ENTRIES = 10_000
"""Maximum entries per kind (tenants by secret, people, tenant checks). The
oldest go first."""

MAX_DROP_RECORDS = 10_000
"""Maximum drops remembered for the lookups in flight. Once a drop is
forgotten, no lookup that started before it is stored, so the limit can cost
cache entries but never lets a stale reply in."""

K = TypeVar("K")
T = TypeVar("T")

FormKey = tuple[str, str | None, str | None]
"""Tenant id, and the secret id or key id that a tenant check named."""

DropKind = Literal["tenant", "people", "person"]
"""Scope of a drop: every entry of a tenant, its people, or one person."""

_DropScope = tuple[DropKind, str, str]
"""A drop's kind, tenant id, and personnel number (empty unless one person)."""

_PERSON_CHANGED = msgspec.json.Decoder(directory_events.PersonChanged)


def cache_ttl_from_env() -> float:
    """Return `GATEWAY_CACHE_TTL_SECONDS`: seconds a lookup is kept, 0 for none."""
    return env_float(
        "GATEWAY_CACHE_TTL_SECONDS", DEFAULT_CACHE_TTL_SECONDS, minimum=0.0
    )


@dataclass(frozen=True)
class ResolvedSecret:
    """The tenant that a link secret opens, and the id of that secret."""

    tenant: messages.TenantForm
    secret_id: str


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    tenant_id: str
    expires: float
    """Time on the cache's clock (monotonic seconds) when the entry lapses."""


class _Entries(Generic[K, T]):
    """Entries of one kind, oldest first, with each tenant's keys.

    The per-tenant key sets make dropping a tenant cost its own entries only.
    Every removal, by TTL, eviction or drop, also removes the key from its
    tenant's set, and an empty set is deleted, so the index never contains
    more keys than there are entries.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[K, _Entry[T]] = OrderedDict()
        self._keys_by_tenant: dict[str, set[K]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def indexed_tenants(self) -> int:
        """Return how many tenants have a key set in the index."""
        return len(self._keys_by_tenant)

    def get(self, key: K, now: float) -> T | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self.remove(key)
            return None
        return entry.value

    def put(self, key: K, value: T, tenant_id: str, expires: float) -> None:
        self.remove(key)
        self._entries[key] = _Entry(value=value, tenant_id=tenant_id, expires=expires)
        self._keys_by_tenant.setdefault(tenant_id, set()).add(key)
        while len(self._entries) > self.max_entries:
            oldest, entry = self._entries.popitem(last=False)
            self._unindex(oldest, entry.tenant_id)

    def remove(self, key: K) -> int:
        """Remove one entry, and return 1 if it was there, else 0."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return 0
        self._unindex(key, entry.tenant_id)
        return 1

    def remove_tenant(self, tenant_id: str) -> int:
        """Remove every entry of `tenant_id`, and return how many there were."""
        keys = self._keys_by_tenant.pop(tenant_id, set())
        for key in keys:
            del self._entries[key]
        return len(keys)

    def clear(self) -> None:
        self._entries.clear()
        self._keys_by_tenant.clear()

    def _unindex(self, key: K, tenant_id: str) -> None:
        keys = self._keys_by_tenant[tenant_id]
        keys.discard(key)
        if not keys:
            del self._keys_by_tenant[tenant_id]


class LookupCache:
    """Successful lookups by secret hash, by (tenant id, personnel number), and
    by (tenant id, secret id, key id) for the tenant checks of a submit.

    A lookup that was in flight while its entry was dropped must not store
    its possibly stale reply. Each caller therefore takes a `snapshot()`
    before asking a service and passes it to `store_*`. That ignores the
    reply if the cache was cleared since the snapshot, or if a later drop
    covered the reply's key. A drop of the tenant covers every key of it,
    and a drop of its people or of one person covers those people only, so
    dropping one person does not stop the others' lookups from being
    stored.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_CACHE_ENTRIES,
        max_drop_records: int = MAX_DROP_RECORDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_drop_records = max_drop_records
        self.clock = clock
        # A per-process key: the cache keys match no stored secret hash.
        self._hash_key = secrets.token_bytes(32)
        self._tenants: _Entries[bytes, ResolvedSecret] = _Entries(max_entries)
        self._people: _Entries[tuple[str, str], messages.Person] = _Entries(max_entries)
        self._forms: _Entries[FormKey, messages.TenantForm] = _Entries(max_entries)
        self._sequence = 0
        # The sequence number of the latest drop of each scope, oldest first.
        self._dropped_at: OrderedDict[_DropScope, int] = OrderedDict()
        # Snapshots older than this are not stored: the cache was cleared, or
        # a drop after them was forgotten.
        self._min_snapshot = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._tenants) + len(self._people) + len(self._forms)

    def drop_records(self) -> int:
        """Return how many drops are remembered for the lookups in flight."""
        return len(self._dropped_at)

    def indexed_tenants(self) -> int:
        """Return how many tenant key sets the indexes of all kinds contain."""
        return (
            self._tenants.indexed_tenants()
            + self._people.indexed_tenants()
            + self._forms.indexed_tenants()
        )

    def secret_key(self, secret: str) -> bytes:
        """Return the cache key of a secret: a keyed hash, never the secret."""
        return hashlib.blake2b(
            secret.encode("utf-8"), key=self._hash_key, digest_size=32
        ).digest()

    def snapshot(self) -> int:
        return self._sequence

    def tenant(self, key: bytes) -> ResolvedSecret | None:
        return self._tenants.get(key, self.clock())

    def person(self, tenant_id: str, number: str) -> messages.Person | None:
        return self._people.get((tenant_id, number), self.clock())

    def tenant_form(self, key: FormKey) -> messages.TenantForm | None:
        return self._forms.get(key, self.clock())

    def store_tenant(
        self,
        key: bytes,
        resolved: ResolvedSecret,
        snapshot: int,
        secret_expires_at: dt.datetime | None = None,
    ) -> None:
        """Keep a secret's tenant, at most until the secret expires."""
        tenant_id = resolved.tenant.tenant_id
        if self._dropped_since(snapshot, ("tenant", tenant_id, "")):
            return
        ttl = self._ttl_until(secret_expires_at)
        self._put(self._tenants, key, resolved, tenant_id, ttl)

    def store_tenant_form(
        self,
        key: FormKey,
        form: messages.TenantForm,
        snapshot: int,
        credential_expires_at: dt.datetime | None = None,
    ) -> None:
        """Keep a tenant check, at most until the secret or key it named expires."""
        tenant_id = key[0]
        if self._dropped_since(snapshot, ("tenant", tenant_id, "")):
            return
        ttl = self._ttl_until(credential_expires_at)
        self._put(self._forms, key, form, tenant_id, ttl)

    def store_person(
        self, tenant_id: str, number: str, person: messages.Person, snapshot: int
    ) -> None:
        """Keep a person under the personnel number that change events name."""
        if self._dropped_since(
            snapshot,
            ("tenant", tenant_id, ""),
            ("people", tenant_id, ""),
            ("person", tenant_id, number),
        ):
            return
        self._put(self._people, (tenant_id, number), person, tenant_id, self.ttl)

    def drop_tenant(self, tenant_id: str) -> int:
        """Forget every entry of `tenant_id`, and return how many there were."""
        self._record_drop(("tenant", tenant_id, ""))
        return (
            self._tenants.remove_tenant(tenant_id)
            + self._people.remove_tenant(tenant_id)
            + self._forms.remove_tenant(tenant_id)
        )

    def drop_people(self, tenant_id: str) -> int:
        """Forget every person of `tenant_id`, keep its other entries, and
        return how many people there were."""
        self._record_drop(("people", tenant_id, ""))
        return self._people.remove_tenant(tenant_id)

    def drop_person(self, tenant_id: str, number: str) -> int:
        """Forget the person with `number` in `tenant_id`, and return 1 if cached."""
        self._record_drop(("person", tenant_id, number))
        return self._people.remove((tenant_id, number))

    def clear(self) -> None:
        self._sequence += 1
        self._min_snapshot = self._sequence
        self._dropped_at.clear()
        self._tenants.clear()
        self._people.clear()
        self._forms.clear()

    def _record_drop(self, scope: _DropScope) -> None:
        self._sequence += 1
        self._dropped_at[scope] = self._sequence
        self._dropped_at.move_to_end(scope)
        while len(self._dropped_at) > self.max_drop_records:
            _, sequence = self._dropped_at.popitem(last=False)
            # Whether the forgotten drop covered a lookup in flight is no
            # longer known, so no lookup that started before it is stored.
            self._min_snapshot = max(self._min_snapshot, sequence)

    def _dropped_since(self, snapshot: int, *scopes: _DropScope) -> bool:
        if snapshot < self._min_snapshot:
            return True
        return any(self._dropped_at.get(scope, 0) > snapshot for scope in scopes)

    def _ttl_until(self, expires_at: dt.datetime | None) -> float:
        if expires_at is None:
            return self.ttl
        remaining = (expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        return min(self.ttl, remaining)

    def _put(
        self,
        entries: _Entries[K, T],
        key: K,
        value: T,
        tenant_id: str,
        ttl: float,
    ) -> None:
        if ttl <= 0:
            return
        entries.put(key, value, tenant_id, self.clock() + ttl)


def _tenant_of(subject: str) -> str:
    # linkdesk.v1.directory.<kind>.<tenant id>
    return subject.rsplit(".", 1)[-1]


def drop_for_event(
    cache: LookupCache, subject: str, payload: bytes
) -> tuple[DropKind, int]:
    """Drop the entries that a change event on `subject` may have made stale.

    Returns what the drop covered and how many entries it removed.
    """
    tenant_id = _tenant_of(subject)
    if subject != subjects.person_changed(tenant_id):
        return "tenant", cache.drop_tenant(tenant_id)
    try:
        event = _PERSON_CHANGED.decode(payload)
    except json_errors.UNDECODABLE as exc:
        # A change kind that this gateway does not know fails to decode too,
        # and it may concern more than the number it names.
        logger.warning(
            "invalid change event, so every cache entry of its tenant is dropped: %s",
            exc,
            extra={
                "event": "lookup_cache_event_invalid",
                "subject": subject,
                "tenant_id": tenant_id,
                "error": repr(exc),
            },
        )
        return "tenant", cache.drop_tenant(tenant_id)
    if event.personnel_number is not None and event.count == 1:
        return "person", cache.drop_person(tenant_id, event.personnel_number)
    return "people", cache.drop_people(tenant_id)


async def subscribe_invalidations(nc: Client, cache: LookupCache) -> Subscription:
    """Drop cache entries on each tenant and personnel change event."""

    async def on_event(msg: Msg) -> None:
        kind, dropped = drop_for_event(cache, msg.subject, msg.data)
        logger.debug(
            "lookup cache entries dropped",
            extra={
                "event": "lookup_cache_dropped",
                "subject": msg.subject,
                "tenant_id": _tenant_of(msg.subject),
                "scope": kind,
                "entries": dropped,
            },
        )

    return await nc.subscribe(subjects.DIRECTORY_EVENTS_WILDCARD, cb=on_event)
