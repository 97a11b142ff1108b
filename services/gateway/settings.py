"""Settings of the gateway, read once at start from environment variables."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from dataclasses import dataclass

from shared.settings import SettingsError, env_int, env_str, request_timeout

logger = logging.getLogger(__name__)

MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class GatewaySettings:
    form_key: bytes
    """`GATEWAY_FORM_KEY`: URL-safe base64 of at least 32 bytes that signs the
    forms. Every replica needs the same key. Unset: a random key per process,
    so a form rendered before a restart is rejected after it."""
    form_ttl_seconds: int
    """`GATEWAY_FORM_TTL_SECONDS` (default 86400): how long a rendered form
    can be submitted."""
    max_body_bytes: int
    """`GATEWAY_MAX_BODY_BYTES` (default 262144): largest accepted form body."""
    request_timeout: float
    """`NATS_REQUEST_TIMEOUT` (default 2.0): seconds to wait for the tenant
    and personnel services and for JetStream's acknowledgement."""


def _form_key() -> bytes:
    raw = env_str("GATEWAY_FORM_KEY", "")
    if not raw:
        logger.warning(
            "GATEWAY_FORM_KEY is not set: using a random key, so forms rendered "
            "by another replica or before a restart are rejected",
            extra={"event": "form_key_generated"},
        )
        return secrets.token_bytes(MIN_KEY_BYTES)
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        msg = "GATEWAY_FORM_KEY must be URL-safe base64"
        raise SettingsError(msg) from None
    if len(key) < MIN_KEY_BYTES:
        msg = (
            f"GATEWAY_FORM_KEY decodes to {len(key)} bytes, at least {MIN_KEY_BYTES}"
            " are needed; generate one with"
            " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
        raise SettingsError(msg)
    return key


def load() -> GatewaySettings:
    return GatewaySettings(
        form_key=_form_key(),
        form_ttl_seconds=env_int("GATEWAY_FORM_TTL_SECONDS", 86_400, minimum=60),
        max_body_bytes=env_int("GATEWAY_MAX_BODY_BYTES", 262_144, minimum=4096),
        request_timeout=request_timeout(),
    )
