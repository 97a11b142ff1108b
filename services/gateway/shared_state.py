"""State that every gateway replica shares, in a JetStream key-value bucket.

Rate-limit counters live here, so that a client cannot escape a limit by
reaching another replica. Every write is a
compare-and-set on the key's revision (`kv.update(..., last=revision)`), so
concurrent replicas do not overwrite each other's increments.

Reads use JetStream's direct get (`$JS.API.DIRECT.GET`, a plain request
whose reply is the stored message) when the bucket's stream allows it. The
gateway creates its bucket that way and switches an existing bucket over
when it opens it. Any replica of a replicated bucket may respond to a
direct get, so a read can miss a write made a moment earlier. Compare-and-set
still rejects a write based on such a read, and callers read again from the
stream leader (`leader=True`) after a rejected write.

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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig
from nats.js.kv import KeyValue

from shared import json_errors

logger = logging.getLogger(__name__)

BUCKET_NAME = re.compile(r"[A-Za-z0-9_-]+")

WARNING_INTERVAL_SECONDS = 60.0
BIND_RETRY_SECONDS = 5.0
"""After any failed call, further calls fail at once for this long before
the bucket is tried again, so an outage (say, the NATS node that holds the
bucket is down) does not add a timeout to every request."""

MAX_REMEMBERED_KEYS = 10_000
"""Keys whose latest read or write is kept in memory; the oldest go first."""

T = TypeVar("T")

_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError)


class StateUnavailable(Exception):
    """The key-value bucket did not respond, so the caller should fail open.

    `write_uncertain` is True when a write was sent and its outcome is
    unknown: it may have been stored although no acknowledgement arrived.
    """

    def __init__(self, message: str, *, write_uncertain: bool = False) -> None:
        super().__init__(message)
        self.write_uncertain = write_uncertain


@dataclass(frozen=True)
class _Remembered:
    data: bytes | None
    """The stored value; None when the key was absent or deleted."""
    revision: int
    at: float
    """Time on the state's clock (monotonic seconds) of the read or write."""


def _decode(data: bytes | None, kind: type[T]) -> T | None:
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=kind)
    except json_errors.UNDECODABLE:
        return None


class SharedState:
    """Typed get and compare-and-set on the gateway's key-value bucket.

    The bucket is opened on first use and created when missing, with a TTL
    (`max_age`) that drops keys not written for that long.

    Reads made with `remember=True` are kept in memory, together with every
    later read and successful write of the same key by this process, so that
    `recent()` can return them without a round trip. A rejected write
    drops the key from memory.
    """

    def __init__(
        self,
        nc: Client,
        bucket: str,
        *,
        ttl_seconds: float,
        timeout: float,
        replicas: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.replicas = replicas
        self.bucket_name = bucket
        self.ttl_seconds = ttl_seconds
        self.timeout = timeout
        self.clock = clock
        self.failures = 0
        """Calls that raised `StateUnavailable` since the start."""
        self._kv: KeyValue | None = None
        self._leader_kv: KeyValue | None = None
        self._next_bind = 0.0
        self._last_warning = -WARNING_INTERVAL_SECONDS
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()

    async def _bucket(self, *, leader: bool = False) -> KeyValue:
        if time.monotonic() < self._next_bind:
            msg = f"key-value bucket {self.bucket_name} failed recently"
            raise StateUnavailable(msg)
        if self._kv is None or self._leader_kv is None:
            js = self.nc.jetstream(timeout=self.timeout)
            try:
                self._kv = await self._open(js)
            except _ERRORS as exc:
                raise self._unavailable("open", exc) from None
            # The same bucket read through the stream leader's API.
            self._leader_kv = KeyValue(
                name=self.bucket_name,
                stream=f"KV_{self.bucket_name}",
                pre=f"$KV.{self.bucket_name}.",
                js=js,
                direct=False,
            )
        return self._leader_kv if leader else self._kv

    async def _open(self, js: JetStreamContext) -> KeyValue:
        try:
            info = await js.stream_info(f"KV_{self.bucket_name}")
        except nats.js.errors.NotFoundError:
            return await self._create(js)
        if not info.config.allow_direct:
            await self._allow_direct(js, info.config)
        return await js.key_value(self.bucket_name)

    async def _create(self, js: JetStreamContext) -> KeyValue:
        kv = await js.create_key_value(
            KeyValueConfig(
                bucket=self.bucket_name,
                description="linkdesk gateway: rate limits",
                history=1,
                ttl=self.ttl_seconds,
                replicas=self.replicas,
                direct=True,
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
        return kv

    async def _allow_direct(self, js: JetStreamContext, config: StreamConfig) -> None:
        """Switch an existing bucket (created by an older gateway) to direct get.

        Without the permission to update the stream, the gateway keeps
        reading through the stream leader's API, which works but costs more.
        """
        try:
            await js.update_stream(config.evolve(allow_direct=True))
        except _ERRORS as exc:
            logger.warning(
                "key-value bucket does not allow direct get and could not be "
                "changed; reading through the stream leader: %r",
                exc,
                extra={"event": "state_direct_get_off", "bucket": self.bucket_name},
            )
            return
        logger.info(
            "key-value bucket switched to direct get",
            extra={"event": "state_direct_get_on", "bucket": self.bucket_name},
        )

    def _unavailable(
        self, operation: str, exc: BaseException, *, write_uncertain: bool = False
    ) -> StateUnavailable:
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
        return StateUnavailable(
            f"{operation} on {self.bucket_name} failed: {exc!r}",
            write_uncertain=write_uncertain,
        )

    def _remember(self, key: str, data: bytes | None, revision: int) -> None:
        self._remembered[key] = _Remembered(data, revision, self.clock())
        self._remembered.move_to_end(key)
        while len(self._remembered) > MAX_REMEMBERED_KEYS:
            self._remembered.popitem(last=False)

    def recent(
        self, key: str, kind: type[T], max_age: float
    ) -> tuple[T | None, int] | None:
        """Return this process's latest read or write of `key`, as `get` does,
        when it is at most `max_age` seconds old; otherwise None.

        Returns None while NATS is disconnected or the bucket failed
        recently, so that callers fail open as they do without memory.
        """
        if not self.nc.is_connected or time.monotonic() < self._next_bind:
            return None
        remembered = self._remembered.get(key)
        if remembered is None or self.clock() - remembered.at > max_age:
            return None
        return _decode(remembered.data, kind), remembered.revision

    async def get(
        self,
        key: str,
        kind: type[T],
        *,
        leader: bool = False,
        remember: bool = False,
    ) -> tuple[T | None, int]:
        """Return the value of `key` decoded as `kind` and its revision.

        A missing or deleted key, or a value that does not decode (written
        by a different version), returns `(None, revision)`, where revision 0
        means that the key has to be created. `leader=True` reads through
        the stream leader, which has every acknowledged write. `remember=True`
        keeps the result for `recent()`.
        """
        kv = await self._bucket(leader=leader)
        data: bytes | None
        try:
            entry = await kv.get(key)
        except nats.js.errors.KeyNotFoundError as exc:
            deleted = getattr(exc, "entry", None)
            data, revision = None, int(deleted.revision) if deleted is not None else 0
        except _ERRORS as exc:
            raise self._unavailable("get", exc) from None
        else:
            data, revision = entry.value or b"", int(entry.revision or 0)
        if remember or key in self._remembered:
            self._remember(key, data, revision)
        return _decode(data, kind), revision

    async def swap(self, key: str, value: object, revision: int) -> int | None:
        """Write `value` if the key is still at `revision` (0: if it is new).

        Returns the key's new revision, or None when another writer came
        first, so that the caller can read again and retry.
        """
        kv = await self._bucket()
        data = msgspec.json.encode(value)
        try:
            if revision:
                written = await kv.update(key, data, last=revision)
            else:
                written = await kv.create(key, data)
        except nats.js.errors.KeyWrongLastSequenceError:
            self._remembered.pop(key, None)
            return None
        except nats.js.errors.KeyNotFoundError:
            # nats-py's create() re-reads a key it lost the race for, and a
            # replica that lags behind can answer "not found": that is a
            # lost compare-and-set too, not an unavailable bucket.
            if revision:
                raise
            self._remembered.pop(key, None)
            return None
        except _ERRORS as exc:
            raise self._unavailable("update", exc, write_uncertain=True) from None
        if key in self._remembered:
            self._remember(key, data, int(written))
        return int(written)
