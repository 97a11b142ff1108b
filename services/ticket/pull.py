"""Pull messages from a durable JetStream consumer with one request kept open.

nats-py's `fetch` returns as soon as the first messages of its request
arrive, and a message that reaches the stream after that waits on the server
until the next `fetch` sends a request. `Puller` keeps a pull request open
while it has room for more messages, so messages arrive while a batch is
being stored, and the next batch takes every message that arrived in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

REQUEST_EXPIRES_SECONDS = 1.0
"""How long one pull request waits on the server for messages."""

_LOST_AFTER_SECONDS = REQUEST_EXPIRES_SECONDS + 1.0
"""Time after sending a request at which it counts as lost when the server
has not ended it, for example because the connection dropped meanwhile."""

_EXPIRED = "408"
"""Status with which the server ends a request whose time is up."""

_HEARTBEAT = "100"
"""Status of an idle heartbeat, which leaves the request open."""


STEADY_WITHIN_SECONDS = 0.05
"""A first message that arrives this soon after `next_batch` was called
counts as part of a steady flow, whose batch may wait to fill up."""


class PullFailed(Exception):
    """The server ended a pull request with an error status."""


class Puller:
    """Buffer of messages delivered to pull requests on one durable consumer.

    At most `batch` messages are buffered or requested at a time, so a
    caller with two batches in hand while the next one arrives has at most
    three times `batch` unacknowledged messages.
    """

    def __init__(
        self,
        nc: Client,
        stream: str,
        consumer: str,
        *,
        batch: int,
        on_answer: Callable[[], None],
    ) -> None:
        self.nc = nc
        self.batch = batch
        self.on_answer = on_answer
        """Called when messages are taken, and when a request expired on the
        server without an error."""
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        # Each request gets a reply subject of its own below this inbox, so
        # that a late status of an earlier request cannot end the open one.
        # Messages carry their stream subject instead, which never starts
        # with the inbox.
        self._inbox = f"{nc.new_inbox()}."
        self._subscription: Subscription | None = None
        self._buffer: list[Msg] = []
        self._changed = asyncio.Event()
        self._sent = 0
        self._open: str | None = None
        """Reply subject of the open request, None when no request is open."""
        self._owed = 0
        """Messages that the open request may still deliver."""
        self._lost_at = 0.0
        self._failure: str | None = None

    @property
    def buffered(self) -> list[Msg]:
        """Messages delivered and not yet taken by `next_batch`."""
        return self._buffer

    async def start(self) -> None:
        self._subscription = await self.nc.subscribe(
            f"{self._inbox}*", cb=self._receive
        )

    async def stop(self) -> None:
        """Unsubscribe. Messages that the server still delivers to the open
        request are redelivered after the consumer's ack wait."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None

    async def next_batch(self, timeout: float, gather: float = 0.0) -> list[Msg]:
        """Return up to `batch` buffered messages, waiting up to `timeout`
        seconds for the first one; return none when none arrived.

        When the first message was there within `STEADY_WITHIN_SECONDS`, a
        batch that is not full waits up to `gather` seconds more to fill up.
        Under load that stores fewer, larger batches, while a submission that
        arrives alone is returned at once.

        Raises PullFailed when the server ended a request with an error, and
        nats.errors.Error when the request cannot be sent.
        """
        called = time.monotonic()
        if not await self._wait_for(1, timeout):
            self._raise_failure()
            return []
        if gather > 0 and time.monotonic() - called < STEADY_WITHIN_SECONDS:
            await self._wait_for(self.batch, gather)
        batch = self._buffer[: self.batch]
        del self._buffer[: self.batch]
        self.on_answer()
        await self._request()
        return batch

    async def _wait_for(self, count: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds until `count` messages are buffered;
        return whether they are. Returns early when a request failed, and
        leaves the failure for `_raise_failure`."""
        deadline = time.monotonic() + timeout
        while len(self._buffer) < count:
            self._changed.clear()
            if self._failure is not None:
                return False
            await self._request()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                return False
        return True

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise PullFailed(failure)

    async def _request(self) -> None:
        """Open a request for as many messages as there is room for, unless
        a request is open."""
        if self._open is not None and time.monotonic() < self._lost_at:
            return
        if not self.nc.is_connected:
            # nats-py would keep the request until it reconnects, and the
            # requests of a long outage would then all be open at once.
            return
        room = self.batch - len(self._buffer)
        if room <= 0:
            return
        self._sent += 1
        reply = f"{self._inbox}{self._sent}"
        request = {"batch": room, "expires": int(REQUEST_EXPIRES_SECONDS * 1e9)}
        # Both the caller's task and the subscription's callback send
        # requests, so the request counts as open before the publish yields.
        self._open = reply
        self._owed = room
        self._lost_at = time.monotonic() + _LOST_AFTER_SECONDS
        try:
            await self.nc.publish(
                self._next_subject, msgspec.json.encode(request), reply=reply
            )
        except BaseException:
            self._open = None
            raise

    async def _receive(self, msg: Msg) -> None:
        if not msg.subject.startswith(self._inbox):
            self._buffer.append(msg)
            self._owed -= 1
            self._changed.set()
            if self._owed <= 0:
                self._open = None
                await self._request_again()
            return
        if msg.subject != self._open:
            return
        headers = msg.headers or {}
        status = headers.get("Status", "")
        if status == _HEARTBEAT:
            return
        self._open = None
        self._changed.set()
        if status == _EXPIRED:
            self.on_answer()
            await self._request_again()
        else:
            # nats-py may put further header lines into the description.
            detail = " ".join(f"{status} {headers.get('Description', '')}".split())
            self._failure = f"pull request ended with status {detail}"

    async def _request_again(self) -> None:
        """Open the next request as soon as one ends, so that no message waits
        on the server while the caller stores a batch."""
        # On an error `next_batch` sends the request again and raises it.
        with contextlib.suppress(nats.errors.Error, OSError):
            await self._request()
