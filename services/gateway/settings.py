"""Settings of the gateway, read once at start from environment variables."""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from dataclasses import dataclass

from shared.settings import (
    SettingsError,
    env_float,
    env_int,
    env_str,
    request_timeout,
)

logger = logging.getLogger(__name__)

MIN_KEY_BYTES = 32
BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class RateLimitSettings:
    """Rate limits; a limit of 0 switches that limit off."""

    failures_per_address: int
    """`GATEWAY_LINK_FAILURES_PER_ADDRESS` (default 10): failed link lookups
    from one client address (IPv4, or IPv6 /64) before backoff starts."""
    failures_per_secret: int
    """`GATEWAY_LINK_FAILURES_PER_SECRET` (default 20): failed person lookups
    with one valid secret, from any address, before backoff starts."""
    failure_window_seconds: int
    """`GATEWAY_LINK_FAILURE_WINDOW_SECONDS` (default 900): quiet time after
    which a key's failures are forgotten."""
    backoff_base_seconds: float
    """`GATEWAY_LINK_BACKOFF_BASE_SECONDS` (default 1): wait after the first
    failure beyond the free ones; it doubles with each further failure."""
    backoff_max_seconds: int
    """`GATEWAY_LINK_BACKOFF_MAX_SECONDS` (default 3600): longest wait."""
    submissions_per_person: int
    """`GATEWAY_SUBMISSIONS_PER_PERSON` (default 20): accepted forms per
    person and window."""
    submissions_per_tenant: int
    """`GATEWAY_SUBMISSIONS_PER_TENANT` (default 1000): accepted forms per
    tenant and window."""
    submission_window_seconds: int
    """`GATEWAY_SUBMISSION_WINDOW_SECONDS` (default 3600)."""


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
    state_bucket: str
    """`GATEWAY_STATE_BUCKET` (default `linkdesk_gateway`): JetStream
    key-value bucket that replicas share for rate limits and accepted forms."""
    state_replicas: int
    """`GATEWAY_STATE_REPLICAS` (default 1): replicas of that bucket; 3 on a
    three-node cluster, so that losing one node keeps the limits."""
    state_timeout: float
    """`GATEWAY_STATE_TIMEOUT_SECONDS` (default 0.5): wait for the bucket;
    after a failure the gateway skips it for a few seconds (fails open)."""
    invalid_link_min_seconds: float
    """`GATEWAY_INVALID_LINK_MIN_SECONDS` (default 0.05): no invalid link is
    answered sooner, so that the reasons take about the same time."""
    rate_limits: RateLimitSettings

    @property
    def state_ttl_seconds(self) -> float:
        """TTL of the key-value bucket: long enough for the longest block
        plus its window, and for a submission window.

        The bucket keeps its TTL from when it was created, so a bucket made
        by an older release keeps entries for at least a form's life.
        """
        limits = self.rate_limits
        return float(
            max(
                limits.backoff_max_seconds + limits.failure_window_seconds,
                limits.submission_window_seconds,
            )
            + 60
        )


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


def _state_bucket() -> str:
    bucket = env_str("GATEWAY_STATE_BUCKET", "linkdesk_gateway")
    if not BUCKET_NAME.fullmatch(bucket):
        msg = f"GATEWAY_STATE_BUCKET must contain only A-Z a-z 0-9 _ -, got {bucket!r}"
        raise SettingsError(msg)
    return bucket


def _rate_limits() -> RateLimitSettings:
    return RateLimitSettings(
        failures_per_address=env_int("GATEWAY_LINK_FAILURES_PER_ADDRESS", 10),
        failures_per_secret=env_int("GATEWAY_LINK_FAILURES_PER_SECRET", 20),
        failure_window_seconds=env_int(
            "GATEWAY_LINK_FAILURE_WINDOW_SECONDS", 900, minimum=1
        ),
        backoff_base_seconds=env_float(
            "GATEWAY_LINK_BACKOFF_BASE_SECONDS", 1.0, minimum=0.001
        ),
        backoff_max_seconds=env_int(
            "GATEWAY_LINK_BACKOFF_MAX_SECONDS", 3600, minimum=1
        ),
        submissions_per_person=env_int("GATEWAY_SUBMISSIONS_PER_PERSON", 20),
        submissions_per_tenant=env_int("GATEWAY_SUBMISSIONS_PER_TENANT", 1000),
        submission_window_seconds=env_int(
            "GATEWAY_SUBMISSION_WINDOW_SECONDS", 3600, minimum=1
        ),
    )


def load() -> GatewaySettings:
    return GatewaySettings(
        form_key=_form_key(),
        form_ttl_seconds=env_int("GATEWAY_FORM_TTL_SECONDS", 86_400, minimum=60),
        max_body_bytes=env_int("GATEWAY_MAX_BODY_BYTES", 262_144, minimum=4096),
        request_timeout=request_timeout(),
        state_bucket=_state_bucket(),
        state_replicas=env_int("GATEWAY_STATE_REPLICAS", 1, minimum=1),
        state_timeout=env_float("GATEWAY_STATE_TIMEOUT_SECONDS", 0.5, minimum=0.05),
        invalid_link_min_seconds=env_float("GATEWAY_INVALID_LINK_MIN_SECONDS", 0.05),
        rate_limits=_rate_limits(),
    )
