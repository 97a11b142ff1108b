"""Request/reply wire types between the services, encoded as JSON by msgspec.

Ticket events, which other systems read too, are in `shared.events`.

New fields get defaults so that older readers keep decoding newer messages.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Base of all wire types."""


# --- tenant service ---------------------------------------------------------


class ResolveSecret(Message, frozen=True, kw_only=True):
    """Ask which tenant a link secret belongs to."""

    secret: str


class GetTenant(Message, frozen=True, kw_only=True):
    """Ask for a tenant's form settings by id."""

    tenant_id: str


class TenantForm(Message, frozen=True, kw_only=True):
    """Tenant settings that the gateway needs to render the ticket form."""

    tenant_id: str
    name: str
    language: str
    categories: list[str]
    frame_ancestors: list[str] = msgspec.field(default_factory=list)
    """Origins that may embed the tenant's form in a frame; empty for none."""
    signed_links_required: bool = False
    """Whether only signed links open the tenant's form."""


TenantRejection = Literal[
    "unknown_secret",
    "unknown_tenant",
    "revoked_secret",
    "expired_secret",
    "intake_disabled",
    "signed_link_required",
]


class TenantResolved(Message, frozen=True, kw_only=True):
    """Reply to `ResolveSecret` and `GetTenant`.

    `tenant` is set when the link may open a form; otherwise `reason` names
    why not, for the gateway's log, and the link gets the neutral 404 page.
    """

    tenant: TenantForm | None = None
    reason: TenantRejection | None = None
    secret_expires_at: dt.datetime | None = None
    """Time at which the resolved secret stops working (set during a
    rotation's grace period), so that a cache keeps this reply no longer."""


class VerifySignedLink(Message, frozen=True, kw_only=True):
    """Ask the tenant service to check a signed link with the key `key_id`.

    The key never leaves the tenant service: the gateway sends the token's
    parts and gets the verified claims back.
    """

    key_id: str
    payload: str
    signature: str


SignedLinkRejection = Literal[
    "unknown_key",
    "revoked_key",
    "expired_key",
    "bad_signature",
    "invalid_claims",
    "tenant_mismatch",
    "link_expired",
    "expiry_too_far",
    "unknown_category",
    "intake_disabled",
]


class SignedLinkVerified(Message, frozen=True, kw_only=True):
    """Reply to `VerifySignedLink`: the tenant and the signed claims, or the
    reason the link opens nothing."""

    tenant: TenantForm | None = None
    reason: SignedLinkRejection | None = None
    personnel_number: str = ""
    preset_location: str = ""
    preset_category: str = ""


# --- personnel service ------------------------------------------------------


class ResolvePerson(Message, frozen=True, kw_only=True):
    """Ask for the person with a personnel number within one tenant."""

    tenant_id: str
    personnel_number: str


class Person(Message, frozen=True, kw_only=True):
    """A person who may file tickets for a tenant."""

    personnel_number: str
    display_name: str


PersonRejection = Literal["unknown_person", "inactive_person"]


class PersonResolved(Message, frozen=True, kw_only=True):
    """Reply to `ResolvePerson`."""

    person: Person | None = None
    reason: PersonRejection | None = None


ENCODER = msgspec.json.Encoder()
"""One encoder for every wire type; msgspec encoders are safe to share."""
