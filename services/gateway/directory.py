"""Ask the tenant and personnel services whether a link may open a form.

Successful lookups are cached in the process for
`GATEWAY_CACHE_TTL_SECONDS` (default 30, 0 switches the cache off): those
of opened links, and those of the submit-time recheck, so that a busy
gateway posts a form without asking another service. A `TenantChanged` or
`PersonChanged` event drops every entry of its tenant, so a revoked secret
or key, a disabled intake or a deactivated person stops opening links and
posting forms as soon as the event arrives. Events travel on core NATS and
can be missed, so the TTL bounds how long a missed change can go unseen,
and a reconnect to NATS clears the whole cache. An entry never outlives
the secret or key it was checked with. Rejections and failures are never
cached, and neither are signed-link verifications.
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
from typing import Generic, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import messages, signed_link, subjects
from shared.messaging import REQUEST_ID_HEADER, DependencyUnavailable, request
from shared.settings import env_float

logger = logging.getLogger(__name__)

DEFAULT_CACHE_TTL_SECONDS = 30.0

MAX_CACHE_ENTRIES = 10_000
"""Maximum entries per kind (tenants by secret, people); the oldest go first."""

K = TypeVar("K")
FormKey = tuple[str, str | None, str | None]
"""Tenant id, and the secret id or key id that a tenant check named."""
T = TypeVar("T")


def cache_ttl_from_env() -> float:
    """Return `GATEWAY_CACHE_TTL_SECONDS`: seconds a lookup is kept, 0 for none."""
    return env_float(
        "GATEWAY_CACHE_TTL_SECONDS", DEFAULT_CACHE_TTL_SECONDS, minimum=0.0
    )


@dataclass(frozen=True)
class Reporter:
    """A link that resolved to an active person of a tenant with intake on."""

    tenant: messages.TenantForm
    person: messages.Person
    signed: bool = False
    """Whether a signed link opened the form."""
    secret_id: str | None = None
    """Id of the link secret that opened the form, or None for a signed link."""
    key_id: str | None = None
    """Id of the key that verified the signed link, or None for a raw link."""
    preset_location: str = ""
    """Location fixed by a signed link; empty for none."""
    preset_category: str = ""
    """Category fixed by a signed link; empty for none."""
    link_expires_at: int = 0
    """Unix time at which the signed link expires; 0 for a raw link."""


@dataclass(frozen=True)
class ResolvedSecret:
    """The tenant that a link secret opens, and the id of that secret."""

    tenant: messages.TenantForm
    secret_id: str


@dataclass(frozen=True)
class Rejected:
    """The reason a link opens nothing; logged, never shown."""

    reason: str


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    tenant_id: str
    expires: float
    """Time on the cache's clock (monotonic seconds) when the entry lapses."""


class LookupCache:
    """Successful lookups by secret hash, by (tenant id, personnel number), and
    by (tenant id, secret id, key id) for the tenant checks of a submit.

    A lookup that was in flight while its tenant's entries were dropped must
    not store its possibly stale reply. Each caller therefore takes a
    `snapshot()` before asking a service and passes it to `store_*`, which
    ignores the reply if the tenant was dropped or the cache cleared since.
    """

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = MAX_CACHE_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        # A per-process key: the cache keys match no stored secret hash.
        self._hash_key = secrets.token_bytes(32)
        self._tenants: OrderedDict[bytes, _Entry[ResolvedSecret]] = OrderedDict()
        self._people: OrderedDict[tuple[str, str], _Entry[messages.Person]] = (
            OrderedDict()
        )
        self._forms: OrderedDict[FormKey, _Entry[messages.TenantForm]] = OrderedDict()
        self._sequence = 0
        self._dropped_at: dict[str, int] = {}
        self._cleared_at = 0

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def __len__(self) -> int:
        return len(self._tenants) + len(self._people) + len(self._forms)

    def secret_key(self, secret: str) -> bytes:
        """Return the cache key of a secret: a keyed hash, never the secret."""
        return hashlib.blake2b(
            secret.encode("utf-8"), key=self._hash_key, digest_size=32
        ).digest()

    def snapshot(self) -> int:
        return self._sequence

    def tenant(self, key: bytes) -> ResolvedSecret | None:
        return self._get(self._tenants, key)

    def person(self, tenant_id: str, number: str) -> messages.Person | None:
        return self._get(self._people, (tenant_id, number))

    def tenant_form(self, key: FormKey) -> messages.TenantForm | None:
        return self._get(self._forms, key)

    def store_tenant(
        self,
        key: bytes,
        resolved: ResolvedSecret,
        snapshot: int,
        secret_expires_at: dt.datetime | None = None,
    ) -> None:
        """Keep a secret's tenant, at most until the secret expires."""
        tenant_id = resolved.tenant.tenant_id
        ttl = self._ttl_until(secret_expires_at)
        self._put(self._tenants, key, resolved, tenant_id, snapshot, ttl)

    def store_tenant_form(
        self,
        key: FormKey,
        form: messages.TenantForm,
        snapshot: int,
        credential_expires_at: dt.datetime | None = None,
    ) -> None:
        """Keep a tenant check, at most until the secret or key it named expires."""
        ttl = self._ttl_until(credential_expires_at)
        self._put(self._forms, key, form, key[0], snapshot, ttl)

    def _ttl_until(self, expires_at: dt.datetime | None) -> float:
        if expires_at is None:
            return self.ttl
        remaining = (expires_at - dt.datetime.now(dt.UTC)).total_seconds()
        return min(self.ttl, remaining)

    def store_person(
        self, tenant_id: str, number: str, person: messages.Person, snapshot: int
    ) -> None:
        self._put(self._people, (tenant_id, number), person, tenant_id, snapshot, None)

    def drop_tenant(self, tenant_id: str) -> int:
        """Forget every entry of `tenant_id`; return how many there were."""
        self._sequence += 1
        self._dropped_at[tenant_id] = self._sequence
        return (
            _drop(self._tenants, tenant_id)
            + _drop(self._people, tenant_id)
            + _drop(self._forms, tenant_id)
        )

    def clear(self) -> None:
        self._sequence += 1
        self._cleared_at = self._sequence
        self._dropped_at.clear()
        self._tenants.clear()
        self._people.clear()
        self._forms.clear()

    def _get(self, entries: OrderedDict[K, _Entry[T]], key: K) -> T | None:
        entry = entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            del entries[key]
            return None
        return entry.value

    def _put(
        self,
        entries: OrderedDict[K, _Entry[T]],
        key: K,
        value: T,
        tenant_id: str,
        snapshot: int,
        ttl: float | None,
    ) -> None:
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0 or self._cleared_at > snapshot:
            return
        if self._dropped_at.get(tenant_id, 0) > snapshot:
            return
        entries[key] = _Entry(
            value=value, tenant_id=tenant_id, expires=self.clock() + ttl
        )
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)


def _drop(entries: OrderedDict[K, _Entry[T]], tenant_id: str) -> int:
    stale = [key for key, entry in entries.items() if entry.tenant_id == tenant_id]
    for key in stale:
        del entries[key]
    return len(stale)


class Directory:
    """Typed NATS requests to the tenant and personnel services.

    Every method raises `shared.messaging.DependencyUnavailable` when a
    service does not reply in time, so that a caller never mistakes an
    outage for an invalid link.
    """

    def __init__(
        self, nc: Client, timeout: float, cache: LookupCache | None = None
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.cache = cache if cache is not None else LookupCache(0)
        self._reconnects = self._reconnect_count()

    def _reconnect_count(self) -> int:
        return int(self.nc.stats.get("reconnects", 0))

    def _cache_usable(self) -> bool:
        """Return whether lookups may use the cache now.

        Events sent while the connection was down are lost, so the cache is
        skipped while disconnected and cleared after each reconnect.
        """
        if not self.cache.enabled or not self.nc.is_connected:
            return False
        reconnects = self._reconnect_count()
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            entries = len(self.cache)
            self.cache.clear()
            logger.info(
                "lookup cache cleared after a NATS reconnect",
                extra={"event": "lookup_cache_cleared", "entries": entries},
            )
        return True

    async def _ask_person(
        self, tenant_id: str, personnel_number: str, request_id: str
    ) -> messages.PersonResolved:
        return await request(
            self.nc,
            subjects.PERSONNEL_RESOLVE,
            messages.ResolvePerson(
                tenant_id=tenant_id, personnel_number=personnel_number
            ),
            messages.PersonResolved,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )

    async def _ask_tenant(
        self, message: messages.ResolveSecret | messages.GetTenant, request_id: str
    ) -> messages.TenantResolved:
        subject = (
            subjects.TENANT_RESOLVE_SECRET
            if isinstance(message, messages.ResolveSecret)
            else subjects.TENANT_GET
        )
        return await request(
            self.nc,
            subject,
            message,
            messages.TenantResolved,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )

    async def resolve_link(
        self, secret: str, personnel_number: str, request_id: str
    ) -> Reporter | Rejected:
        """Resolve the secret to a tenant, then the number to a person of it."""
        use_cache = self._cache_usable()
        snapshot = self.cache.snapshot()
        key = self.cache.secret_key(secret)

        found_secret = self.cache.tenant(key) if use_cache else None
        if found_secret is None:
            resolved = await self._ask_tenant(
                messages.ResolveSecret(secret_sha256=messages.secret_sha256(secret)),
                request_id,
            )
            if resolved.tenant is None:
                return Rejected(resolved.reason or "unknown_secret")
            if resolved.secret_id is None:
                # A form without the secret's id cannot be checked for a
                # revocation when it is submitted, so none is rendered.
                return Rejected("missing_credential")
            found_secret = ResolvedSecret(resolved.tenant, resolved.secret_id)
            if use_cache:
                self.cache.store_tenant(
                    key, found_secret, snapshot, resolved.secret_expires_at
                )
                # The same reply is the result of the tenant check at submit.
                self.cache.store_tenant_form(
                    (resolved.tenant.tenant_id, resolved.secret_id, None),
                    resolved.tenant,
                    snapshot,
                    resolved.secret_expires_at,
                )
        tenant = found_secret.tenant
        person = await self._person(tenant.tenant_id, personnel_number, request_id)
        if isinstance(person, Rejected):
            return person
        return Reporter(tenant=tenant, person=person, secret_id=found_secret.secret_id)

    async def resolve_signed_link(
        self, token: signed_link.SignedToken, request_id: str
    ) -> Reporter | Rejected:
        """Have the tenant service check a signed link, then find its person.

        The tenant service's reply is never cached, so a revoked key stops
        working at once; the person may come from the cache.
        """
        verified = await request(
            self.nc,
            subjects.TENANT_VERIFY_SIGNED_LINK,
            messages.VerifySignedLink(
                key_id=token.key_id, payload=token.payload, signature=token.signature
            ),
            messages.SignedLinkVerified,
            timeout=self.timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )
        if verified.tenant is None:
            return Rejected(verified.reason or "bad_signature")
        if verified.key_id is None:
            # A form without the key's id cannot be checked for a revocation
            # when it is submitted, so none is rendered.
            return Rejected("missing_credential")
        tenant = verified.tenant
        person = await self._person(
            tenant.tenant_id, verified.personnel_number, request_id
        )
        if isinstance(person, Rejected):
            return person
        return Reporter(
            tenant=tenant,
            person=person,
            signed=True,
            key_id=verified.key_id,
            preset_location=verified.preset_location,
            preset_category=verified.preset_category,
            link_expires_at=_link_expiry(token),
        )

    async def frame_ancestors(self, tenant_id: str, request_id: str) -> list[str]:
        """Return the origins that may frame the tenant's pages.

        Returns none, so that no frame is allowed, when the tenant is unknown,
        its intake is off, or the tenant service does not respond.
        """
        try:
            found = await self._tenant_form(tenant_id, None, None, request_id)
        except DependencyUnavailable:
            return []
        return [] if isinstance(found, Rejected) else found.frame_ancestors

    async def recheck(
        self,
        tenant_id: str,
        personnel_number: str,
        request_id: str,
        *,
        secret_id: str | None,
        key_id: str | None,
    ) -> Reporter | Rejected:
        """Check again at submit time that intake is on, the person active, and
        the secret (`secret_id`) or signing key (`key_id`) that opened the form
        neither revoked nor expired.

        The tenant service also rejects a secret once its tenant requires
        signed links. Both results may come from the cache, which change
        events keep current.
        """
        if secret_id is None and key_id is None:
            return Rejected("missing_credential")
        tenant = await self._tenant_form(tenant_id, secret_id, key_id, request_id)
        if isinstance(tenant, Rejected):
            return tenant
        person = await self._person(tenant_id, personnel_number, request_id)
        if isinstance(person, Rejected):
            return person
        return Reporter(
            tenant=tenant,
            person=person,
            signed=key_id is not None,
            secret_id=secret_id,
            key_id=key_id,
        )

    async def _tenant_form(
        self,
        tenant_id: str,
        secret_id: str | None,
        key_id: str | None,
        request_id: str,
    ) -> messages.TenantForm | Rejected:
        """Return the tenant's form settings while its intake is on and the
        named secret or key still works, from the cache when it has them."""
        use_cache = self._cache_usable()
        key: FormKey = (tenant_id, secret_id, key_id)
        form = self.cache.tenant_form(key) if use_cache else None
        if form is not None:
            return form
        snapshot = self.cache.snapshot()
        resolved = await self._ask_tenant(
            messages.GetTenant(tenant_id=tenant_id, secret_id=secret_id, key_id=key_id),
            request_id,
        )
        if resolved.tenant is None:
            return Rejected(resolved.reason or "unknown_tenant")
        if use_cache:
            self.cache.store_tenant_form(
                key, resolved.tenant, snapshot, resolved.credential_expires_at
            )
        return resolved.tenant

    async def _person(
        self, tenant_id: str, personnel_number: str, request_id: str
    ) -> messages.Person | Rejected:
        """Return the active person with this number, from the cache when it
        has them."""
        use_cache = self._cache_usable()
        person = self.cache.person(tenant_id, personnel_number) if use_cache else None
        if person is not None:
            return person
        snapshot = self.cache.snapshot()
        found = await self._ask_person(tenant_id, personnel_number, request_id)
        if found.person is None:
            return Rejected(found.reason or "unknown_person")
        if use_cache:
            self.cache.store_person(tenant_id, personnel_number, found.person, snapshot)
        return found.person


def _link_expiry(token: signed_link.SignedToken) -> int:
    # The tenant service verified the signature, so the claims are genuine.
    try:
        return signed_link.decode_payload(token.payload).expires_at
    except signed_link.InvalidClaims:
        return 0


def _tenant_of(subject: str) -> str:
    # linkdesk.v1.directory.<kind>.<tenant id>
    return subject.rsplit(".", 1)[-1]


async def subscribe_invalidations(nc: Client, cache: LookupCache) -> Subscription:
    """Drop a tenant's cache entries on each of its change events."""

    async def on_event(msg: Msg) -> None:
        tenant_id = _tenant_of(msg.subject)
        dropped = cache.drop_tenant(tenant_id)
        logger.debug(
            "lookup cache entries dropped",
            extra={
                "event": "lookup_cache_dropped",
                "subject": msg.subject,
                "tenant_id": tenant_id,
                "entries": dropped,
            },
        )

    return await nc.subscribe(subjects.DIRECTORY_EVENTS_WILDCARD, cb=on_event)
