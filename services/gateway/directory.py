"""Ask the tenant and personnel services whether a link may open a form.

Successful lookups go through the gateway's `LookupCache`
(`services/gateway/lookup_cache.py`), which the services' change events
keep current.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.aio.client import Client

from services.gateway.lookup_cache import FormKey, LookupCache, ResolvedSecret
from shared import messages, signed_link, subjects
from shared.messaging import REQUEST_ID_HEADER, DependencyUnavailable, request

logger = logging.getLogger(__name__)


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
class Rejected:
    """The reason a link opens nothing; logged, never shown."""

    reason: str


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
        # Change events name the stored number, and an entry under another
        # spelling would survive that person's event. The gateway and the
        # personnel service trim numbers alike, so this guards against drift.
        if use_cache and found.person.personnel_number == personnel_number:
            self.cache.store_person(tenant_id, personnel_number, found.person, snapshot)
        return found.person


def _link_expiry(token: signed_link.SignedToken) -> int:
    # The tenant service verified the signature, so the claims are genuine.
    try:
        return signed_link.decode_payload(token.payload).expires_at
    except signed_link.InvalidClaims:
        return 0
