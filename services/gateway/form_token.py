"""The signed token in every rendered form.

The form posts to a URL without the secret, so the token carries what the
link resolved to (tenant, person, language and the submission id) and an
HMAC-SHA256 over it with the gateway's key. The submission id in it makes a
repeated post of the same form one ticket; the signature makes a forged
post fail.
"""

from __future__ import annotations

import base64
import binascii
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


def _signature(key: bytes, payload: str) -> str:
    return _b64encode(hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest())


def sign(key: bytes, context: FormContext) -> str:
    """Return `payload.signature`, both URL-safe base64."""
    payload = _b64encode(_encoder.encode(context))
    return f"{payload}.{_signature(key, payload)}"


def verify(key: bytes, token: str, now: float | None = None) -> FormContext:
    """Return the context of a genuine, unexpired token.

    Raises `InvalidToken` or `ExpiredToken`.
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
    if context.expires_at < (time.time() if now is None else now):
        raise ExpiredToken(context)
    return context
