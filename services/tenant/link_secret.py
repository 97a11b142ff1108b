"""Link secrets: generation and hashing, no I/O."""

from __future__ import annotations

import hashlib
import secrets

SECRET_BYTES = 24
"""192 bits from `secrets`; the link contract asks for at least 128."""


def generate() -> str:
    """Return a new secret in the URL-safe base64 alphabet (no `+ / = &`)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def digest(secret: str) -> bytes:
    """Return the SHA-256 of `secret`, the only form that is stored."""
    return hashlib.sha256(secret.encode("utf-8")).digest()
