"""Replay a parked message: publish its bytes again and remember that it was."""

from __future__ import annotations

import logging

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from services.ticket import repository
from shared import subjects

logger = logging.getLogger(__name__)

REPLAY_OF_HEADER = "Linkdesk-Replay-Of"
"""Header of a replayed message: the stream sequence of the parked original."""


class ReplayFailed(Exception):
    """JetStream did not acknowledge the replayed message."""


def replay_message_id(parked_id: int) -> str:
    """Return the Nats-Msg-Id of a replay.

    It differs from the original's id, which JetStream would drop as a
    duplicate, and stays the same for one parked message, so a retried replay
    within the duplicate window is published once.
    """
    return f"linkdesk-replay-{parked_id}"


async def replay_parked(
    pool: asyncpg.Pool, nc: Client, parked_id: int, *, admin: str, timeout: float
) -> repository.ParkedMessage:
    """Publish a parked message's bytes to its subject and mark it replayed.

    The row stays locked while publishing, so two concurrent replays publish
    once. Raises ParkedMessageNotFound, AlreadyReplayed or ReplayFailed.
    """
    async with pool.acquire() as connection, connection.transaction():
        parked = await repository.lock_parked_for_replay(connection, parked_id)
        # JetStream's own headers (Nats-Msg-Id, Nats-Expected-*) would make
        # the server drop or reject the copy; other headers are kept.
        headers = {
            key: value
            for key, value in parked.headers.items()
            if not key.lower().startswith("nats-")
        }
        headers["Nats-Msg-Id"] = replay_message_id(parked_id)
        headers[REPLAY_OF_HEADER] = str(parked.message.stream_sequence)
        try:
            ack = await nc.jetstream(timeout=timeout).publish(
                parked.message.subject,
                parked.data,
                stream=subjects.TICKET_STREAM,
                headers=headers,
            )
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            msg = f"replay of parked message {parked_id} not acknowledged: {exc!r}"
            raise ReplayFailed(msg) from None
        replayed = await repository.mark_replayed(
            connection, parked_id, replayed_by=admin, replay_sequence=ack.seq
        )
    logger.info(
        "parked message replayed",
        extra={
            "event": "parked_replayed",
            "parked_id": parked_id,
            "stream_seq": parked.message.stream_sequence,
            "replay_seq": ack.seq,
            "admin": admin,
        },
    )
    return replayed
