"""Repeated publishes of one form on a stream replicated on three servers."""

from __future__ import annotations

import asyncio
import uuid

import nats
import pytest

from services.gateway.publisher import Published, publish_submission
from shared import streams
from shared.embedded import EmbeddedNatsCluster
from tests.helpers import submitted_event

POSTS_AT_ONCE = 4
FORMS = 20


async def test_posts_at_once_one_stored_rest_duplicates(
    nats_cluster: EmbeddedNatsCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a replicated stream stores the first publish, it rejects a repeat
    as "in process". The gateway publishes it again and gets the duplicate."""
    monkeypatch.setenv("TICKET_STREAM_REPLICAS", "3")
    nc = await nats.connect(servers=nats_cluster.urls, connect_timeout=2)
    try:
        await streams.ensure_ticket_stream(nc.jetstream(timeout=10.0))
        tenant_id = str(uuid.uuid4())
        for _ in range(FORMS):
            event = submitted_event(tenant_id)
            results: list[Published] = await asyncio.gather(
                *(
                    publish_submission(nc, event, timeout=5.0, request_id="r")
                    for _ in range(POSTS_AT_ONCE)
                )
            )

            [first] = [result for result in results if not result.duplicate]
            assert {result.sequence for result in results} == {first.sequence}
    finally:
        await nc.close()
