"""The JetStream stream of ticket events, declared once for every service."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared import subjects
from shared.settings import env_float, env_int

logger = logging.getLogger(__name__)

DAY = 86_400.0


def ticket_stream_config() -> StreamConfig:
    """Build the stream settings from `TICKET_STREAM_*` variables.

    `TICKET_STREAM_MAX_AGE_DAYS` (default 30) bounds how long events stay for
    subscribers to replay; `TICKET_DUPLICATE_WINDOW_SECONDS` (default 600) is
    how long JetStream drops a repeated `Nats-Msg-Id` on its own.
    `TICKET_STREAM_REPLICAS` (default 1) is 3 on a three-node cluster.
    """
    return StreamConfig(
        name=subjects.TICKET_STREAM,
        description="linkdesk ticket events",
        subjects=[subjects.TICKET_EVENTS_WILDCARD],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        storage=StorageType.FILE,
        max_age=env_float("TICKET_STREAM_MAX_AGE_DAYS", 30.0, minimum=0.01) * DAY,
        duplicate_window=env_float(
            "TICKET_DUPLICATE_WINDOW_SECONDS", 600.0, minimum=1.0
        ),
        num_replicas=env_int("TICKET_STREAM_REPLICAS", 1, minimum=1),
    )


async def ensure_ticket_stream(js: JetStreamContext) -> None:
    """Create the stream, or update it to the declared settings. Idempotent."""
    config = ticket_stream_config()
    try:
        await js.stream_info(subjects.TICKET_STREAM)
    except NotFoundError:
        await js.add_stream(config)
        logger.info(
            "stream created",
            extra={"event": "stream_created", "stream": subjects.TICKET_STREAM},
        )
        return
    await js.update_stream(config)
    logger.info(
        "stream up to date",
        extra={"event": "stream_updated", "stream": subjects.TICKET_STREAM},
    )
