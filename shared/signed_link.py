"""Signed links: the token format, HMAC-SHA256 signing and payload decoding.

A signed link is `<link path>?sig=<token>`, and the token is

    v1.<key id>.<payload>.<signature>

- `payload` is unpadded URL-safe base64 (RFC 4648, section 5) of the UTF-8
  text of five lines joined by `\\n`: tenant id, personnel number, expiry in
  Unix seconds, preset location and preset category. The last two may be
  empty lines and no value may contain a control character.
- `signature` is unpadded URL-safe base64 of HMAC-SHA256, keyed with the
  ASCII bytes of the tenant's signing key text, over the ASCII text
  `v1.<key id>.<payload>`.

The signature covers the payload exactly as it travels, so a verifier never
re-encodes anything. docs/signed-links.md gives the scheme with test vectors
for intranet developers. No I/O here: the intranet side (`sign`) and the
tenant service's check (`signature_matches`, `decode_payload`) share this
module, and the gateway only checks the token's shape (`split`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

VERSION = "v1"
QUERY_PREFIX = "sig="
"""The signed link's query is exactly this prefix and the token."""

MAX_TOKEN_LENGTH = 2048
"""Longest accepted token in bytes: room for the longest personnel number,
location and category in 4-byte UTF-8."""

MAX_PERSONNEL_NUMBER_LENGTH = 64
MAX_LOCATION_LENGTH = 200
MAX_CATEGORY_LENGTH = 80

KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_EXPIRY = re.compile(r"[1-9][0-9]{0,11}")


class InvalidClaims(ValueError):
    """The payload does not decode to five valid lines."""


@dataclass(frozen=True)
class Claims:
    """Values that the intranet vouches for in a signed link."""

    tenant_id: str
    personnel_number: str
    expires_at: int
    """Unix seconds after which the link opens nothing."""
    location: str = ""
    """Preset location shown as fixed on the form; empty for none."""
    category: str = ""
    """Preset category shown as fixed on the form; empty for none."""


@dataclass(frozen=True)
class SignedToken:
    """A token split into its parts; the signature is not checked yet."""

    key_id: str
    payload: str
    signature: str

    @property
    def signing_input(self) -> str:
        return f"{VERSION}.{self.key_id}.{self.payload}"


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _has_control_character(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _check_claims(claims: Claims) -> None:
    """Raise `InvalidClaims` naming the first field that breaks the rules."""
    texts = {
        "tenant_id": (claims.tenant_id, 64),
        "personnel_number": (claims.personnel_number, MAX_PERSONNEL_NUMBER_LENGTH),
        "location": (claims.location, MAX_LOCATION_LENGTH),
        "category": (claims.category, MAX_CATEGORY_LENGTH),
    }
    for name, (value, maximum) in texts.items():
        if len(value) > maximum:
            msg = f"{name} has {len(value)} characters, at most {maximum}"
            raise InvalidClaims(msg)
        if _has_control_character(value):
            msg = f"{name} {value!r} contains a control character"
            raise InvalidClaims(msg)
    if not claims.tenant_id or not claims.personnel_number.strip():
        msg = "tenant_id and personnel_number must not be empty"
        raise InvalidClaims(msg)
    if claims.personnel_number != claims.personnel_number.strip():
        msg = f"personnel_number {claims.personnel_number!r} has surrounding spaces"
        raise InvalidClaims(msg)
    if not _EXPIRY.fullmatch(str(claims.expires_at)):
        msg = f"expires_at {claims.expires_at!r} is not a positive Unix time"
        raise InvalidClaims(msg)


def encode_payload(claims: Claims) -> str:
    """Return the payload part of a token for `claims`.

    Raises `InvalidClaims` for an empty or too long value or a control
    character, which a verifier would reject as well.
    """
    _check_claims(claims)
    lines = (
        claims.tenant_id,
        claims.personnel_number,
        str(claims.expires_at),
        claims.location,
        claims.category,
    )
    return _b64encode("\n".join(lines).encode("utf-8"))


def signature(key: str, signing_input: str) -> str:
    """Return the signature part: HMAC-SHA256 keyed with the key's ASCII text."""
    digest = hmac.new(
        key.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return _b64encode(digest)


def sign(key_id: str, key: str, claims: Claims) -> str:
    """Return the token for `claims`, signed with the tenant's key."""
    if not KEY_ID_PATTERN.fullmatch(key_id):
        msg = f"key id {key_id!r} must be 1 to 64 of A-Z a-z 0-9 _ -"
        raise InvalidClaims(msg)
    signing_input = f"{VERSION}.{key_id}.{encode_payload(claims)}"
    return f"{signing_input}.{signature(key, signing_input)}"


def split(token: str) -> SignedToken | None:
    """Return the parts of a well-formed token, or None.

    Checks only the shape (version, alphabet, lengths), never the signature.
    """
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION:
        return None
    _, key_id, payload, mac = parts
    if not KEY_ID_PATTERN.fullmatch(key_id):
        return None
    if not _BASE64URL.fullmatch(payload) or not _BASE64URL.fullmatch(mac):
        return None
    # HMAC-SHA256 is 32 bytes: 43 characters of unpadded base64.
    if len(mac) != 43:
        return None
    return SignedToken(key_id=key_id, payload=payload, signature=mac)


def signature_matches(key: str, token: SignedToken) -> bool:
    """Compare the token's signature with the expected one in constant time."""
    return hmac.compare_digest(
        signature(key, token.signing_input).encode("ascii"),
        token.signature.encode("ascii"),
    )


def decode_payload(payload: str) -> Claims:
    """Decode a payload whose signature matched; raises `InvalidClaims`."""
    try:
        text = _b64decode(payload).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        msg = f"payload is not base64 of UTF-8 text: {exc}"
        raise InvalidClaims(msg) from None
    lines = text.split("\n")
    if len(lines) != 5:
        msg = f"payload has {len(lines)} lines, expected 5"
        raise InvalidClaims(msg)
    tenant_id, number, expiry, location, category = lines
    if not _EXPIRY.fullmatch(expiry):
        msg = f"expiry {expiry!r} is not a positive Unix time in seconds"
        raise InvalidClaims(msg)
    claims = Claims(
        tenant_id=tenant_id,
        personnel_number=number,
        expires_at=int(expiry),
        location=location,
        category=category,
    )
    _check_claims(claims)
    return claims
