"""Signing keys of signed links: generation, no I/O."""

from __future__ import annotations

import secrets

KEY_BYTES = 32
"""256 bits from `secrets`, as much as HMAC-SHA256 can use."""

KEY_ID_BYTES = 8


def generate() -> str:
    """Return a new key: 43 characters of URL-safe base64.

    Signers use the text's ASCII bytes as the HMAC key, so they need not
    decode it first.
    """
    return secrets.token_urlsafe(KEY_BYTES)


def generate_id() -> str:
    """Return a new key id: 16 lowercase hex digits, named in every link."""
    return secrets.token_hex(KEY_ID_BYTES)
