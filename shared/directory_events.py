"""Change events of the tenant and personnel directories, on plain NATS.

The tenant and personnel services publish one small event after each
committed change, and the gateway drops what it cached for that tenant, or
for that person only when a `PersonChanged` names one.
Delivery is at most once (core NATS, no JetStream), so a reader must not
depend on seeing every event: the gateway bounds its cache by a TTL and
clears it after a reconnect. Events never carry a link secret.

New fields get defaults so that older readers keep decoding newer events.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Literal

import msgspec
import nats.errors
from nats.aio.client import Client

from shared import messages, subjects

logger = logging.getLogger(__name__)

PUBLISH_FLUSH_TIMEOUT = 1
"""Seconds to wait for the server to confirm that it received an event."""

TenantChange = Literal[
    "created",
    "updated",
    "intake_enabled",
    "intake_disabled",
    "secret_issued",
    "secret_rotated",
    "secret_revoked",
    "signing_key_issued",
    "signing_key_rotated",
    "signing_key_revoked",
]

PersonChange = Literal["created", "updated", "deactivated", "reactivated", "imported"]


class TenantChanged(messages.Message, frozen=True, kw_only=True):
    """A tenant's settings, intake switch or link secrets changed."""

    tenant_id: str
    change: TenantChange
    fields: list[str] = msgspec.field(default_factory=list)
    """Names of the tenant fields an update changed; empty for other changes."""
    secret_id: str | None = None
    """Id (never the secret) of the secret that was issued or revoked."""
    key_id: str | None = None
    """Id (never the key) of the signing key that was issued or revoked."""
    changed_at: dt.datetime


class PersonChanged(messages.Message, frozen=True, kw_only=True):
    """One person of a tenant changed, or an import changed several."""

    tenant_id: str
    change: PersonChange
    personnel_number: str | None = None
    """The person's number; unset after an import, which may touch many.

    With `count` 1, gateways drop the cached lookup of this number only. A
    change that touches a second number, such as giving a person a new
    number, must leave it unset or set `count` above 1, so that gateways
    drop all of the tenant's people."""
    count: int = 1
    """How many people the change touched."""
    changed_at: dt.datetime


async def publish(nc: Client, event: TenantChanged | PersonChanged) -> bool:
    """Publish `event` on its tenant's subject and wait until the server has it.

    Call this after the database transaction has committed, so that a reader
    who reloads on the event sees the change. Returns False, after logging,
    when the event could not be sent; the change itself stays committed and
    readers fall back on their cache TTL.
    """
    if isinstance(event, TenantChanged):
        subject = subjects.tenant_changed(event.tenant_id)
    else:
        subject = subjects.person_changed(event.tenant_id)
    try:
        await nc.publish(subject, messages.ENCODER.encode(event))
        # The flush round trip makes the server hold the event before the
        # admin API responds, so a client that acts on the response next
        # finds the event already on its way to the gateways.
        await nc.flush(timeout=PUBLISH_FLUSH_TIMEOUT)
    except (nats.errors.Error, TimeoutError) as exc:
        logger.warning(
            "change event not published: %s",
            exc,
            extra={
                "event": "directory_event_failed",
                "subject": subject,
                "tenant_id": event.tenant_id,
                "change": event.change,
                "error": repr(exc),
            },
        )
        return False
    logger.debug(
        "change event published",
        extra={
            "event": "directory_event_published",
            "subject": subject,
            "tenant_id": event.tenant_id,
            "change": event.change,
        },
    )
    return True


def now() -> dt.datetime:
    """Return the current time in UTC, the `changed_at` of a new event."""
    return dt.datetime.now(dt.UTC)
