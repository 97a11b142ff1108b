"""Link secrets: generation and hashing, no I/O."""

from __future__ import annotations

import hashlib
import re
import secrets

SECRET_BYTES = 24
"""192 bits from `secrets`; the link contract requires at least 128."""

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def generate() -> str:
    """Return a new secret in the URL-safe base64 alphabet (no `+ / = &`)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> bytes:
    """Return the SHA-256 of `secret`, the only form that is stored."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def parse_hex_digest(text: str) -> bytes | None:
    """Return the digest that `text` spells as 64 lowercase hex digits, else None."""
    if _HEX_DIGEST.fullmatch(text) is None:
        return None
    return bytes.fromhex(text)
