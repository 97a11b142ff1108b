"""The ticket stream's duplicate window, as read by the gateway.

JetStream drops a second publish with the same `Nats-Msg-Id` within the
stream's duplicate window and reports it as a duplicate in its
acknowledgement. A form whose submission id was first rendered less than a
window ago cannot have been published before that window began. The
publish itself therefore reports a repeat of it, and the gateway can skip
the lookup in the ticket service that would otherwise come first. Older
forms, and every form while the window is unknown, are looked up before
publishing (`accepted_form`).

The window is read from the stream's configuration and read again at most
once a minute, so a changed `TICKET_DUPLICATE_WINDOW_SECONDS` takes effect
without restarting the gateway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.aio.client import Client

from shared import subjects

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0
"""How long a window read from the stream is used before it is read again."""

SAFETY_SHARE = 0.1
"""Share of the window left unused, for clock differences between replicas
and the NATS server, and for a window made shorter since it was read."""


class DuplicateWindow:
    """The ticket stream's duplicate window, read lazily from NATS."""

    def __init__(
        self,
        nc: Client,
        timeout: float,
        *,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.wall_clock = wall_clock
        self.clock = clock
        self.seconds = 0.0
        """The window in seconds; 0 while it is unknown."""
        self._read_at: float | None = None

    async def covers(self, first_rendered_at: int) -> bool:
        """Return whether JetStream would still report a repeated publish of a
        form first rendered at `first_rendered_at` (Unix seconds; 0 when
        unknown) as a duplicate."""
        if first_rendered_at <= 0:
            return False
        if self._read_at is None or self.clock() - self._read_at >= REFRESH_SECONDS:
            await self.refresh()
        usable = self.seconds * (1 - SAFETY_SHARE)
        return self.wall_clock() - first_rendered_at < usable

    async def refresh(self) -> None:
        """Read the window from the stream; forget it when the read fails."""
        self._read_at = self.clock()
        try:
            info = await self.nc.jetstream(timeout=self.timeout).stream_info(
                subjects.TICKET_STREAM
            )
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            if self.seconds:
                logger.warning(
                    "duplicate window unknown, every post is looked up first",
                    extra={"event": "duplicate_window_unknown", "error": repr(exc)},
                )
            self.seconds = 0.0
            return
        seconds = float(info.config.duplicate_window or 0.0)
        if seconds != self.seconds:
            logger.info(
                "duplicate window read from the stream",
                extra={"event": "duplicate_window_read", "seconds": seconds},
            )
        self.seconds = seconds
