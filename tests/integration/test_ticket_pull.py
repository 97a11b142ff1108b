"""The ticket consumer's puller keeps one pull request open on a nats-server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from services.ticket import pull
from shared.embedded import EmbeddedNats

STREAM = "PULL"
CONSUMER = "store"


@pytest.fixture
async def nc(own_nats: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(own_nats.url)
    js = client.jetstream()
    await js.add_stream(name=STREAM, subjects=["pull.>"])
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT),
    )
    yield client
    await client.close()


class Answers:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def start_puller(nc: Client, batch: int, answers: Answers) -> pull.Puller:
    puller = pull.Puller(nc, STREAM, CONSUMER, batch=batch, on_answer=answers)
    await puller.start()
    return puller


async def publish(
    nc: Client, count: int, headers: dict[str, str] | None = None
) -> None:
    js = nc.jetstream()
    for n in range(count):
        await js.publish(f"pull.{n}", str(n).encode(), headers=headers)


async def wait_for_buffered(puller: pull.Puller, count: int) -> None:
    """Wait until `count` messages are buffered (bounded by count)."""
    for _ in range(500):
        if len(puller.buffered) >= count:
            return
        await asyncio.sleep(0.01)


def payloads(batch: list[Msg]) -> list[bytes]:
    return [msg.data for msg in batch]


async def test_batch_takes_messages_arrived_meanwhile(nc: Client) -> None:
    """Messages published while a batch is handled wait in the buffer, not
    on the server, and the next batch takes all of them."""
    puller = await start_puller(nc, 10, Answers())
    await publish(nc, 1)
    first = await puller.next_batch(timeout=5.0)

    await publish(nc, 3)
    await wait_for_buffered(puller, 3)
    second = await puller.next_batch(timeout=5.0)

    assert payloads(first) == [b"0"]
    assert payloads(second) == [b"0", b"1", b"2"]
    assert puller.buffered == []
    await puller.stop()


async def test_buffer_never_exceeds_batch(nc: Client) -> None:
    await publish(nc, 12)
    puller = await start_puller(nc, 5, Answers())

    # The first batch is cut short when the messages arrive in more than
    # one read. While it is handled, the puller buffers up to 5.
    batches = [await puller.next_batch(timeout=5.0)]
    await wait_for_buffered(puller, 5)
    await asyncio.sleep(0.2)
    buffered = len(puller.buffered)
    for _ in range(12):
        if sum(len(batch) for batch in batches) >= 12:
            break
        batches.append(await puller.next_batch(timeout=5.0))

    assert buffered == 5
    assert all(1 <= len(batch) <= 5 for batch in batches)
    assert b"".join(data for batch in batches for data in payloads(batch)) == b"".join(
        str(n).encode() for n in range(12)
    )
    await puller.stop()


async def publish_later(nc: Client, count: int, delay: float) -> None:
    await asyncio.sleep(delay)
    await publish(nc, count)


async def test_steady_batch_gathers_more(nc: Client) -> None:
    """A first message that is there at once belongs to a steady flow, so
    the batch waits for the messages that follow it."""
    puller = await start_puller(nc, 10, Answers())
    await publish(nc, 1)
    await wait_for_buffered(puller, 1)
    later = asyncio.create_task(publish_later(nc, 3, 0.1))

    batch = await puller.next_batch(timeout=5.0, gather=3.0)
    await later

    assert payloads(batch) == [b"0", b"0", b"1", b"2"]
    await puller.stop()


async def test_batch_without_gather_is_prompt(nc: Client) -> None:
    puller = await start_puller(nc, 10, Answers())
    await publish(nc, 1)
    await wait_for_buffered(puller, 1)
    later = asyncio.create_task(publish_later(nc, 3, 0.1))

    batch = await puller.next_batch(timeout=5.0)
    await later

    assert payloads(batch) == [b"0"]
    await puller.stop()


async def test_full_batch_skips_gather(nc: Client) -> None:
    puller = await start_puller(nc, 3, Answers())
    await publish(nc, 3)
    await wait_for_buffered(puller, 3)

    # The gather would outlast the test's timeout if a full batch waited.
    batch = await asyncio.wait_for(puller.next_batch(timeout=5.0, gather=600.0), 10)

    assert payloads(batch) == [b"0", b"1", b"2"]
    await puller.stop()


async def test_lone_message_skips_gather(nc: Client) -> None:
    """A message after a quiet spell is returned without waiting for more."""
    puller = await start_puller(nc, 10, Answers())
    later = asyncio.create_task(publish_later(nc, 1, pull.STEADY_WITHIN_SECONDS + 0.2))

    batch = await asyncio.wait_for(puller.next_batch(timeout=5.0, gather=600.0), 10)
    await later

    assert payloads(batch) == [b"0"]
    await puller.stop()


async def test_empty_batch_after_timeout(nc: Client) -> None:
    """No message: an empty batch, and the expired request calls on_answer."""
    answers = Answers()
    puller = await start_puller(nc, 5, answers)

    started = time.monotonic()
    batch = await puller.next_batch(timeout=pull.REQUEST_EXPIRES_SECONDS + 0.5)

    assert batch == []
    assert time.monotonic() - started < pull.REQUEST_EXPIRES_SECONDS + 1.0
    assert answers.count >= 1
    await puller.stop()


async def test_status_header_in_message_is_data(nc: Client) -> None:
    """A published message with a Status header is a message, not a status."""
    puller = await start_puller(nc, 5, Answers())
    await publish(nc, 1, headers={"Status": "408"})

    batch = await puller.next_batch(timeout=5.0)

    assert payloads(batch) == [b"0"]
    await puller.stop()


async def test_deleted_consumer_raises(nc: Client) -> None:
    answers = Answers()
    puller = await start_puller(nc, 5, answers)
    assert await puller.next_batch(timeout=0.1) == []
    await nc.jetstream().delete_consumer(STREAM, CONSUMER)

    with pytest.raises(pull.PullFailed, match="409"):
        await puller.next_batch(timeout=5.0)
    assert answers.count == 0
    await puller.stop()


async def test_missing_consumer_raises(nc: Client) -> None:
    puller = pull.Puller(nc, STREAM, "missing", batch=5, on_answer=Answers())
    await puller.start()

    with pytest.raises(pull.PullFailed, match="503"):
        await puller.next_batch(timeout=5.0)
    await puller.stop()
