"""State that every gateway replica shares, in a JetStream key-value bucket.

Rate-limit counters and the ledger of accepted forms live here, so that a
client cannot escape a limit by reaching another replica. Every write is a
compare-and-set on the key's revision (`kv.update(..., last=revision)`), so
concurrent replicas do not overwrite each other's increments.

When the bucket cannot be reached (JetStream down, NATS disconnected, a
timeout), every call raises `StateUnavailable` and the callers fail open:
requests are served without limits rather than refused, because the
services behind the gateway stay protected by their own capacity and an
outage of NATS already stops submissions. Each failure is counted, and
logged at most once per `WARNING_INTERVAL_SECONDS`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

logger = logging.getLogger(__name__)

BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")

WARNING_INTERVAL_SECONDS = 60.0
BIND_RETRY_SECONDS = 5.0
"""After any failed call, further calls fail at once for this long before
the bucket is tried again, so an outage (say, the NATS node that holds the
bucket is down) does not add a timeout to every request."""

T = TypeVar("T")


class StateUnavailable(Exception):
    """The key-value bucket did not respond, so the caller should fail open."""


class SharedState:
    """Typed get and compare-and-set on the gateway's key-value bucket.

    The bucket is opened on first use and created when missing, with a TTL
    (`max_age`) that drops keys not written for that long.
    """

    def __init__(
        self,
        nc: Client,
        bucket: str,
        *,
        ttl_seconds: float,
        timeout: float,
        replicas: int = 1,
    ) -> None:
        self.nc = nc
        self.replicas = replicas
        self.bucket_name = bucket
        self.ttl_seconds = ttl_seconds
        self.timeout = timeout
        self.failures = 0
        """Calls that raised `StateUnavailable` since the start."""
        self._kv: KeyValue | None = None
        self._next_bind = 0.0
        self._last_warning = -WARNING_INTERVAL_SECONDS

    async def _bucket(self) -> KeyValue:
        if time.monotonic() < self._next_bind:
            msg = f"key-value bucket {self.bucket_name} failed recently"
            raise StateUnavailable(msg)
        if self._kv is not None:
            return self._kv
        js = self.nc.jetstream(timeout=self.timeout)
        try:
            try:
                self._kv = await js.key_value(self.bucket_name)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=self.bucket_name,
                        description="linkdesk gateway: rate limits, accepted forms",
                        history=1,
                        ttl=self.ttl_seconds,
                        replicas=self.replicas,
                    )
                )
                logger.info(
                    "key-value bucket created",
                    extra={
                        "event": "state_bucket_created",
                        "bucket": self.bucket_name,
                        "ttl_seconds": self.ttl_seconds,
                    },
                )
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise self._unavailable("open", exc) from None
        return self._kv

    def _unavailable(self, operation: str, exc: BaseException) -> StateUnavailable:
        self.failures += 1
        now = time.monotonic()
        self._next_bind = now + BIND_RETRY_SECONDS
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            logger.warning(
                "key-value bucket unavailable, serving without rate limits: %r",
                exc,
                extra={
                    "event": "state_unavailable",
                    "bucket": self.bucket_name,
                    "operation": operation,
                    "failures": self.failures,
                },
            )
        return StateUnavailable(f"{operation} on {self.bucket_name} failed: {exc!r}")

    async def get(self, key: str, kind: type[T]) -> tuple[T | None, int]:
        """Return the value of `key` decoded as `kind` and its revision.

        A missing or deleted key, or a value that does not decode (written
        by a different version), returns `(None, revision)`, where revision 0
        means that the key has to be created.
        """
        kv = await self._bucket()
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError as exc:
            deleted = getattr(exc, "entry", None)
            return None, int(deleted.revision) if deleted is not None else 0
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise self._unavailable("get", exc) from None
        revision = int(entry.revision or 0)
        try:
            return msgspec.json.decode(entry.value or b"", type=kind), revision
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None, revision

    async def swap(self, key: str, value: object, revision: int) -> bool:
        """Write `value` if the key is still at `revision` (0: if it is new).

        Returns False when another writer came first, so that the caller
        can read again and retry.
        """
        kv = await self._bucket()
        data = msgspec.json.encode(value)
        try:
            if revision:
                await kv.update(key, data, last=revision)
            else:
                await kv.create(key, data)
        except nats.js.errors.KeyWrongLastSequenceError:
            return False
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise self._unavailable("update", exc) from None
        return True
