"""Delete outbox rows that were sent long ago, so the outbox stops growing.

A sent row is kept for `TICKET_OUTBOX_KEEP_DAYS` (default 30, the ticket
stream's default message age). While the stream still contains an event,
its row shows which stream sequence carried it. Unsent rows are never
deleted. Every replica prunes, and two passes at once delete each row once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import asyncpg

from services.ticket import repository

logger = logging.getLogger(__name__)

_ERRORS: tuple[type[Exception], ...] = (
    *repository.DATABASE_DOWN,
    asyncpg.PostgresError,
)

PRUNE_INTERVAL_SECONDS = 600.0
"""Time between two passes."""

CHUNK_ROWS = 1_000
"""Rows deleted per statement, so that a pass never holds many row locks."""

MAX_CHUNKS_PER_PASS = 50
"""Statements per pass. A longer backlog of old rows is left to a pass
CATCH_UP_SECONDS later, so the first pass after an upgrade does not load
the database for long."""

CATCH_UP_SECONDS = 1.0
"""Pause after a pass that stopped at MAX_CHUNKS_PER_PASS."""


class OutboxPruner:
    def __init__(
        self,
        pool: asyncpg.Pool,
        keep: dt.timedelta,
        interval: float = PRUNE_INTERVAL_SECONDS,
    ) -> None:
        self.pool = pool
        self.keep = keep
        self.interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def prune(self) -> tuple[int, bool]:
        """Delete sent rows older than `keep`, oldest first, in chunks.

        Returns how many were deleted, and whether the pass stopped at
        MAX_CHUNKS_PER_PASS with rows still being found. Raises the
        database's errors.
        """
        deleted = 0
        for _ in range(MAX_CHUNKS_PER_PASS):
            count = await repository.delete_sent_events(
                self.pool, self.keep, CHUNK_ROWS
            )
            deleted += count
            if count == 0:
                return deleted, False
        return deleted, True

    async def run(self) -> None:
        """Prune at once and then every `interval` seconds until `stop()`;
        sooner while old rows are left over from a full pass."""
        while not self._stopping.is_set():
            pause = self.interval
            try:
                deleted, more = await self.prune()
            except _ERRORS as exc:
                logger.warning(
                    "pruning the outbox failed, retrying in %.0f s",
                    self.interval,
                    extra={"event": "outbox_prune_failed", "error": repr(exc)},
                )
            else:
                if more:
                    pause = min(pause, CATCH_UP_SECONDS)
                if deleted:
                    logger.info(
                        "%d sent events deleted from the outbox",
                        deleted,
                        extra={
                            "event": "outbox_pruned",
                            "count": deleted,
                            "keep_days": self.keep / dt.timedelta(days=1),
                        },
                    )
            try:
                async with asyncio.timeout(pause):
                    await self._stopping.wait()
            except TimeoutError:
                pass
