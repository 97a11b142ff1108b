"""Counters in the shared bucket that add increments up in memory first.

Writing every increment with its own compare-and-set makes concurrent
requests on one key collide, retry and wait. Here each process adds its
increments up per key, and a background task writes the sum. It writes at
once when the key was not written for `flush_interval` seconds, otherwise
at the end of that interval, or as soon as `flush_after` increments are
waiting. One compare-and-set then carries many increments. A write that another replica
beat is read again from the stream leader and retried, and a write that
failed keeps its sum for the next attempt. Increments are dropped unwritten
only when their window is over (they can no longer change a decision) or
when `MAX_COUNTERS` keys wait at once.

`value()` returns what the bucket holds plus this process's increments
that are not written yet. Other replicas' increments show up once they
flushed them, so a replica sees the others' counts at most one flush
interval late.

Every operation on one key (read or write) runs under that key's lock,
and a `value()` call uses a read or write that started after the call did.
Concurrent calls thus share one read, and a read never races with this
process's own write of the same key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from services.gateway.shared_state import SharedState, StateUnavailable

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.2
"""Shortest time between two writes of one key by one process."""

FLUSH_AFTER_INCREMENTS = 100
"""Waiting increments of one key that trigger a write before the interval
ends."""

MAX_COUNTERS = 10_000
"""Keys kept in memory. When they are all taken, keys with nothing to write
are dropped until a tenth of the room is free again, so that the search for
them is rare. Only when every key has a sum waiting (the bucket was
unreachable for a long time) does the oldest sum get dropped, and that is
logged."""

FORGET_INTERVAL_SECONDS = 1.0
"""Shortest time between two searches for keys whose window is over."""

MAX_KEYS_PER_ROUND = 64
"""Keys written concurrently by the background task."""

MAX_SWAP_ATTEMPTS = 10
"""Compare-and-set attempts of one write before giving up on it for now."""

SWAP_JITTER_SECONDS = 0.005
"""Upper bound of the random pause after a lost compare-and-set, times the
attempt number."""

RETRY_AFTER_FAILURE_SECONDS = 1.0
"""Wait before writing a key again after the bucket did not respond."""

WARNING_INTERVAL_SECONDS = 60.0


class Count(msgspec.Struct, kw_only=True):
    """A counter's value in the bucket."""

    count: int
    writer: str = ""
    """Id of the write that stored this value, to tell after a failed write
    whether it was stored. Empty in values written by older gateways."""


@dataclass
class _Counter:
    expires_at: float
    """Time on the counters' clock after which the key is of no use."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: int = 0
    """Increments not yet sent to the bucket."""
    stored: int = 0
    """The latest value known to be in the bucket."""
    revision: int = 0
    """Its revision; 0 while the key was not found."""
    known: bool = False
    """Whether `stored` and `revision` came from the bucket."""
    observed: float = -math.inf
    """Start (monotonic seconds) of the read or write that `stored` came from."""
    last_flush: float = -math.inf
    """Start (monotonic seconds) of the latest write attempt."""
    retry_at: float = -math.inf
    """No write before this time (monotonic seconds), after a failure."""
    unconfirmed: _Write | None = None
    """A write that failed in a way that may still have stored it."""

    def learn(self, stored: int, revision: int, started: float) -> None:
        """Take a value read or written by an operation that began at `started`."""
        # A direct get may come from a replica that lags behind a write of
        # ours; a lower revision is older than what is known.
        if not self.known or revision >= self.revision:
            self.stored, self.revision, self.known = stored, revision, True
        self.observed = max(self.observed, started)


@dataclass(frozen=True)
class _Write:
    writer: str
    amount: int
    based_on: int
    """Revision that the write expected to replace."""


async def pause_after_conflict(attempt: int) -> None:
    """Sleep a random time that grows with `attempt`, after a lost
    compare-and-set."""
    # Not a secret: jitter only spreads colliding writers apart.
    await asyncio.sleep(random.uniform(0, SWAP_JITTER_SECONDS * attempt))  # noqa: S311


class BatchedCounters:
    """Counters in the shared bucket, written in batches by a background task.

    `clock` gives the time that `expires_at` is measured in (Unix seconds
    by default). Call `close()` before the NATS connection closes, so that
    waiting increments are written.
    """

    def __init__(
        self,
        state: SharedState,
        *,
        flush_interval: float = FLUSH_INTERVAL_SECONDS,
        flush_after: int = FLUSH_AFTER_INCREMENTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.flush_interval = flush_interval
        self.flush_after = flush_after
        self.clock = clock
        self._counters: dict[str, _Counter] = {}
        self._waiting_keys: dict[str, None] = {}
        """Every key with increments to write, and maybe some without, so
        that the background task looks only at these."""
        self._next_forget = -math.inf
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._writer_prefix = uuid.uuid4().hex[:12]
        self._writes = 0
        self._closed = False
        self._last_warning: dict[str, float] = {}

    # --- requests -----------------------------------------------------------

    def add(self, key: str, expires_at: float) -> None:
        """Count one increment of `key`; the background task writes it."""
        counter = self._counter(key, expires_at)
        counter.pending += 1
        self._waiting_keys[key] = None
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="linkdesk-batched-counters"
            )
            self._task.add_done_callback(_log_crash)
        if self._is_due(counter, time.monotonic()):
            self._wake.set()

    async def value(
        self, key: str, expires_at: float, *, since: float | None = None
    ) -> int:
        """Return the count in the bucket plus this process's waiting increments.

        The bucket's count comes from a read or write that started after this
        call, or after `since` (monotonic seconds) when given. Raises
        `StateUnavailable` when the bucket does not respond.
        """
        started = time.monotonic() if since is None else since
        counter = self._counter(key, expires_at)
        async with counter.lock:
            if counter.unconfirmed is not None:
                await self._settle(key, counter, counter.unconfirmed)
            elif counter.observed < started:
                await self._read(key, counter)
            return counter.stored + counter.pending

    def pending_total(self) -> int:
        """Return the increments not yet written, over all keys."""
        return sum(
            _unwritten(counter)
            for counter in map(self._counters.get, self._waiting_keys)
            if counter is not None
        )

    async def flush(self, max_rounds: int = 10) -> None:
        """Write every waiting increment now, in at most `max_rounds` rounds.

        Returns early when a round writes nothing, such as when the bucket is
        unreachable; those increments stay waiting.
        """
        for _ in range(max_rounds):
            keys = [key for key, counter in self._counters.items() if _waiting(counter)]
            if not keys:
                return
            before = self.pending_total()
            for start in range(0, len(keys), MAX_KEYS_PER_ROUND):
                batch = keys[start : start + MAX_KEYS_PER_ROUND]
                await asyncio.gather(*(self._flush_key(key) for key in batch))
            if self.pending_total() >= before:
                return

    async def close(self, timeout: float) -> None:
        """Stop the background task and write what is waiting, for at most
        `timeout` seconds."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        left = self.pending_total()
        if left:
            logger.warning(
                "submission counts not written to the key-value bucket at stop",
                extra={"event": "rate_limit_counts_unwritten", "increments": left},
            )

    # --- bucket operations ----------------------------------------------------

    async def _read(self, key: str, counter: _Counter, *, leader: bool = False) -> None:
        started = time.monotonic()
        entry, revision = await self.state.get(key, Count, leader=leader)
        counter.learn(entry.count if entry else 0, revision, started)

    async def _flush_key(self, key: str) -> None:
        counter = self._counters.get(key)
        if counter is None:
            return
        async with counter.lock:
            if not _waiting(counter):
                return
            counter.last_flush = time.monotonic()
            try:
                await self._write(key, counter)
            except StateUnavailable:
                counter.retry_at = time.monotonic() + RETRY_AFTER_FAILURE_SECONDS

    async def _write(self, key: str, counter: _Counter) -> None:
        """Write the key's waiting increments; call with its lock held.

        While a write is on its way, its increments sit in `unconfirmed`, so
        that a cancellation or a lost acknowledgement cannot lose them.
        """
        if counter.unconfirmed is not None:
            await self._settle(key, counter, counter.unconfirmed)
        if counter.pending == 0:
            return
        if not counter.known:
            await self._read(key, counter, leader=True)
        for attempt in range(1, MAX_SWAP_ATTEMPTS + 1):
            self._writes += 1
            write = _Write(
                writer=f"{self._writer_prefix}-{self._writes}",
                amount=counter.pending,
                based_on=counter.revision,
            )
            value = Count(count=counter.stored + write.amount, writer=write.writer)
            counter.pending, counter.unconfirmed = 0, write
            started = time.monotonic()
            try:
                revision = await self.state.swap(key, value, write.based_on)
            except StateUnavailable as exc:
                if not exc.write_uncertain:
                    _put_back(counter, write)
                raise
            if revision is not None:
                counter.unconfirmed = None
                counter.learn(value.count, revision, started)
                return
            _put_back(counter, write)
            await pause_after_conflict(attempt)
            await self._read(key, counter, leader=True)
        counter.retry_at = time.monotonic() + self.flush_interval
        self._warn(
            "rate_limit_write_conflict",
            "submission counts not written yet: the key kept changing; retrying",
            key=key,
            increments=counter.pending,
        )

    async def _settle(self, key: str, counter: _Counter, write: _Write) -> None:
        """Find out whether a failed write was stored after all.

        The leader's value carries the id of the write that stored it. If the
        key is still at the revision the write expected, it was not stored
        and its increments wait again. If another write came after it, there
        is no telling, so the increments wait again and may count twice.
        """
        started = time.monotonic()
        entry, revision = await self.state.get(key, Count, leader=True)
        counter.unconfirmed = None
        if entry is not None and entry.writer == write.writer:
            counter.learn(entry.count, revision, started)
            return
        counter.learn(entry.count if entry else 0, revision, started)
        counter.pending += write.amount
        self._waiting_keys[key] = None
        if revision != write.based_on:
            self._warn(
                "rate_limit_write_uncertain",
                "a failed write of submission counts may have been stored; "
                "counting its increments again",
                key=key,
                increments=write.amount,
            )

    # --- background task ------------------------------------------------------

    def _is_due(self, counter: _Counter, now: float) -> bool:
        if not _waiting(counter) or now < counter.retry_at:
            return False
        return (
            counter.pending >= self.flush_after
            or now - counter.last_flush >= self.flush_interval
        )

    def _due_keys(self, now: float) -> list[str]:
        """Return the keys due for a write, and forget the keys that turned
        out to have nothing to write."""
        due = []
        for key in list(self._waiting_keys):
            counter = self._counters.get(key)
            if counter is None or not _waiting(counter):
                del self._waiting_keys[key]
            elif self._is_due(counter, now):
                due.append(key)
        return due

    def _next_due(self, now: float) -> float | None:
        """Return the seconds until the next key is due, None when none waits."""
        waits = [
            max(counter.retry_at, counter.last_flush + self.flush_interval) - now
            for counter in map(self._counters.get, self._waiting_keys)
            if counter is not None and _waiting(counter)
        ]
        return max(0.0, min(waits)) if waits else None

    async def _run(self) -> None:
        """Write due keys until nothing waits any more, then end."""
        while not self._closed:
            now = time.monotonic()
            due = self._due_keys(now)
            if due:
                await asyncio.gather(
                    *(self._flush_key(key) for key in due[:MAX_KEYS_PER_ROUND])
                )
                continue
            if now >= self._next_forget:
                self._next_forget = now + FORGET_INTERVAL_SECONDS
                self._forget_expired()
            wait = self._next_due(now)
            if wait is None:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    # --- memory ---------------------------------------------------------------

    def _counter(self, key: str, expires_at: float) -> _Counter:
        counter = self._counters.get(key)
        if counter is None:
            self._make_room()
            counter = self._counters[key] = _Counter(expires_at=expires_at)
        return counter

    def _forget_expired(self) -> None:
        """Forget keys whose window is over. Their waiting increments can no
        longer change any decision, so they are dropped unwritten."""
        now = self.clock()
        expired = [
            key
            for key, counter in self._counters.items()
            if counter.expires_at <= now and not counter.lock.locked()
        ]
        for key in expired:
            del self._counters[key]

    def _make_room(self) -> None:
        if len(self._counters) < MAX_COUNTERS:
            return
        self._forget_expired()
        idle = [
            key
            for key, counter in self._counters.items()
            if not _waiting(counter) and not counter.lock.locked()
        ]
        for key in idle[: max(0, len(self._counters) - MAX_COUNTERS * 9 // 10)]:
            del self._counters[key]
        while len(self._counters) >= MAX_COUNTERS:
            key = next(iter(self._counters))
            dropped = self._counters.pop(key)
            self._warn(
                "rate_limit_counts_dropped",
                "submission counts dropped unwritten: too many keys waiting",
                key=key,
                increments=_unwritten(dropped),
            )

    def _warn(self, event: str, message: str, **fields: object) -> None:
        """Log `message` at most once per `WARNING_INTERVAL_SECONDS` per event."""
        now = time.monotonic()
        if now - self._last_warning.get(event, -math.inf) < WARNING_INTERVAL_SECONDS:
            return
        self._last_warning[event] = now
        logger.warning(message, extra={"event": event, **fields})


def _log_crash(task: asyncio.Task[None]) -> None:
    """Log an error that ended the background task; the next `add` starts a
    new one, and the waiting increments stay."""
    if task.cancelled() or task.exception() is None:
        return
    logger.error(
        "background writer of submission counts failed",
        exc_info=task.exception(),
        extra={"event": "rate_limit_writer_failed"},
    )


def _unwritten(counter: _Counter) -> int:
    unconfirmed = counter.unconfirmed.amount if counter.unconfirmed else 0
    return counter.pending + unconfirmed


def _waiting(counter: _Counter) -> bool:
    return counter.pending > 0 or counter.unconfirmed is not None


def _put_back(counter: _Counter, write: _Write) -> None:
    """Return the increments of a write that was not stored to the waiting ones."""
    counter.unconfirmed = None
    counter.pending += write.amount
