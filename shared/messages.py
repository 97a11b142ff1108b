"""Request/reply wire types between the services, encoded as JSON by msgspec.

Ticket events, which other systems read too, are in `shared.events`.

New fields get defaults so that older readers keep decoding newer messages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Literal

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """Base of all wire types."""


# --- tenant service ---------------------------------------------------------


class ResolveSecret(Message, frozen=True, kw_only=True):
    """Ask which tenant a link secret belongs to.

    The request carries the secret's digest, never the secret, so that a
    subscriber on NATS cannot collect working links.
    """

    secret_sha256: str
    """Lowercase hex SHA-256 of the secret's UTF-8 bytes (`secret_sha256()`),
    the digest that the tenant service stores."""


def secret_sha256(secret: str) -> str:
    """Return the digest of a link secret that `ResolveSecret` carries."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class GetTenant(Message, frozen=True, kw_only=True):
    """Ask for a tenant's form settings by id.

    With `secret_id` or `key_id`, the reply is a rejection unless that link
    secret or signing key of this tenant still opens forms, so that a form
    stops working when the credential that opened it is revoked or expires.
    """

    tenant_id: str
    secret_id: str | None = None
    """Id of the link secret that opened the form (`TenantResolved.secret_id`)."""
    key_id: str | None = None
    """Id of the signing key that verified the form's signed link."""


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
    "unknown_key",
    "revoked_key",
    "expired_key",
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
    secret_id: str | None = None
    """Id of the secret that resolved (replies to `ResolveSecret` only), which
    the gateway sends back in `GetTenant` when the form is submitted."""
    credential_expires_at: dt.datetime | None = None
    """In a reply to `GetTenant` that names a secret or key: the time at which
    that credential stops working, so that a cache keeps this reply no longer."""


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
    key_id: str | None = None
    """Id of the key that verified the link, which the gateway sends back in
    `GetTenant` when the form is submitted."""


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


# --- ticket service ---------------------------------------------------------


class FindSubmission(Message, frozen=True, kw_only=True):
    """Request for the ticket stored from a form, by the form's submission id."""

    tenant_id: str
    submission_id: str


class StoredSubmission(Message, frozen=True, kw_only=True):
    """The reference and the field values of a ticket as it was submitted."""

    reference: str
    category: str
    subject: str
    description: str
    location: str
    urgency: str


SubmissionRejection = Literal["unknown_submission"]


class SubmissionFound(Message, frozen=True, kw_only=True):
    """Reply to `FindSubmission`. `reason` is set when no ticket of that
    tenant was stored from that form (yet)."""

    submission: StoredSubmission | None = None
    reason: SubmissionRejection | None = None


ENCODER = msgspec.json.Encoder()
"""One encoder for every wire type; msgspec encoders are safe to share."""
