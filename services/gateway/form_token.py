"""The signed token in every rendered form.

The form posts to a URL without the secret, so the token carries what the
link resolved to and an HMAC-SHA256 over it with the gateway's key. That is
the tenant, the person, the language, the id of the secret or signing key
that opened the form, and the submission id. The submission id makes a
repeated post of the same form one ticket; the signature makes a forged
post fail.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time

import msgspec


class FormContext(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    tenant_name: str
    personnel_number: str
    person_name: str
    language: str
    categories: list[str]
    submission_id: str
    expires_at: int
    signed_link: bool = False
    """Whether a signed link opened the form."""
    secret_id: str | None = None
    """Id of the link secret that opened the form, set exactly when
    `signed_link` is false, so that a submit can check the secret again."""
    key_id: str | None = None
    """Id of the signing key that verified the signed link, set exactly when
    `signed_link` is true."""
    link_expires_at: int = 0
    """Unix time at which the signed link that opened the form expires; 0 for
    a raw link. An expired form is not renewed after this time."""
    preset_location: str = ""
    """Location that a signed link fixed; the posted value is ignored."""
    preset_category: str = ""
    """Category that a signed link fixed; the posted value is ignored."""
    first_rendered_at: int = 0
    """Unix time at which a form with this submission id was first rendered,
    kept when the form is renewed; 0 for a token from before this field."""


class InvalidToken(ValueError):
    """The token is missing, malformed or not signed with our key."""


class ExpiredToken(ValueError):
    """The token is genuine but older than its lifetime."""

    def __init__(self, context: FormContext) -> None:
        self.context = context
        super().__init__("form token expired")


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FormContext)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """Return an HMAC-SHA256 of nothing yet under `key`, to be copied: a copy
    skips the key setup, about a quarter of a short message's HMAC."""
    return hmac.new(key, digestmod=hashlib.sha256)


def _mac(key: bytes, message: bytes) -> bytes:
    mac = _keyed(key).copy()
    mac.update(message)
    return mac.digest()


def _signature(key: bytes, payload: str) -> str:
    return _b64encode(_mac(key, payload.encode("ascii")))


def sign(key: bytes, context: FormContext) -> str:
    """Return `payload.signature`, both URL-safe base64."""
    payload = _b64encode(_encoder.encode(context))
    return f"{payload}.{_signature(key, payload)}"


def verify(key: bytes, token: str, now: float | None = None) -> FormContext:
    """Return the context of a genuine, unexpired token.

    Raises `InvalidToken` or `ExpiredToken`. A token that does not name the
    secret or key that opened its form is invalid, whatever its age.
    """
    payload, _, signature = token.partition(".")
    # `hmac.compare_digest` raises TypeError on non-ASCII text, so a posted
    # token with such characters is rejected here as malformed.
    if not payload or not signature or not token.isascii():
        msg = "form token is malformed"
        raise InvalidToken(msg)
    if not hmac.compare_digest(_signature(key, payload), signature):
        msg = "form token signature does not match"
        raise InvalidToken(msg)
    try:
        context = _decoder.decode(_b64decode(payload))
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        msg = f"form token payload is invalid: {exc}"
        raise InvalidToken(msg) from None
    if not _names_credential(context):
        msg = "form token names no link secret or signing key"
        raise InvalidToken(msg)
    if context.expires_at < (time.time() if now is None else now):
        raise ExpiredToken(context)
    return context


def _names_credential(context: FormContext) -> bool:
    """Return whether the context names exactly the credential of its link:
    a secret id for a raw link, a key id for a signed link."""
    if context.signed_link:
        return context.key_id is not None and context.secret_id is None
    return context.secret_id is not None and context.key_id is None


def _tenant_mac(key: bytes, tenant_id: str) -> str:
    # A purpose prefix, so that this MAC can never pass as a form token's.
    message = f"confirmation-tenant\0{tenant_id}".encode()
    return _b64encode(_mac(key, message)[:16])


def sign_tenant(key: bytes, tenant_id: str) -> str:
    """Return `tenant_id.mac`, which the confirmation URL carries so that its
    page may be framed by that tenant's allowed origins."""
    return f"{tenant_id}.{_tenant_mac(key, tenant_id)}"


def verify_tenant(key: bytes, value: str) -> str | None:
    """Return the tenant id of a genuine `sign_tenant` value, else None."""
    tenant_id, _, mac = value.partition(".")
    if not tenant_id or not mac or not value.isascii():
        return None
    if not hmac.compare_digest(_tenant_mac(key, tenant_id), mac):
        return None
    return tenant_id
