"""Read one tenant's linkdesk ticket events with a durable JetStream consumer.

A minimal subscriber of another system, to copy and adapt:

    python examples/subscriber.py --nats-url nats://acme-erp:PASSWORD@127.0.0.1:4222 \\
        --tenant 00000000-0000-4000-8000-00000000a11e --durable acme-erp

It creates (or reuses) the durable consumer `--durable`, filtered on
`tickets.v1.<tenant>.>`, prints each event as one JSON line, and acknowledges
it after it was handled. The consumer remembers the position between runs.
`--since` deletes the consumer and creates it again from that time, to replay.

Events can arrive more than once (a redelivery after a crash, an outbox
retry after the stream's duplicate window), so the subscriber skips event ids
it has handled. `--seen-file` keeps those ids between runs; a real system
stores them in its own database, in the transaction that handles the event.

The connection uses the inbox prefix `_INBOX_<durable>`, which the NATS
permission example in deploy/nats/tenant-subscriber.conf allows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

STREAM = "TICKETS"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nats-url",
        default="nats://127.0.0.1:4222",
        help="NATS server, with user:password@ if it needs them "
        "(default nats://127.0.0.1:4222)",
    )
    parser.add_argument("--tenant", required=True, help="tenant id (UUID)")
    parser.add_argument(
        "--durable", required=True, help="name of this subscriber's durable consumer"
    )
    parser.add_argument(
        "--since",
        type=dt.datetime.fromisoformat,
        help="replay from this RFC 3339 time, e.g. 2026-03-01T00:00:00+01:00; "
        "recreates the consumer",
    )
    parser.add_argument(
        "--max", type=int, default=None, help="stop after handling this many events"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop after this many seconds without a new event",
    )
    parser.add_argument(
        "--seen-file",
        type=Path,
        help="file of handled event ids, one a line, kept between runs",
    )
    return parser.parse_args(argv)


def load_seen(path: Path | None) -> set[str]:
    if path is None or not path.exists():
        return set()
    return set(path.read_text(encoding="utf-8").split())


async def ensure_consumer(
    js: nats.js.JetStreamContext, args: argparse.Namespace
) -> None:
    """Create the durable consumer, or recreate it from `--since`."""
    if args.since is not None:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(STREAM, args.durable)
    config = ConsumerConfig(
        name=args.durable,
        durable_name=args.durable,
        # The filter is part of the API subject, so NATS permissions can
        # allow this consumer for one tenant only.
        filter_subject=f"tickets.v1.{args.tenant}.>",
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        deliver_policy=DeliverPolicy.BY_START_TIME if args.since else DeliverPolicy.ALL,
        opt_start_time=args.since,
    )
    await js.add_consumer(STREAM, config)


def handle(event: dict[str, object]) -> None:
    """Do the subscriber's work; here, print the event as one JSON line."""
    print(json.dumps(event, ensure_ascii=False), flush=True)


async def run(args: argparse.Namespace) -> int:
    nc = await nats.connect(
        args.nats_url, inbox_prefix=f"_INBOX_{args.durable}", connect_timeout=5
    )
    seen = load_seen(args.seen_file)
    handled = 0
    try:
        js = nc.jetstream()
        await ensure_consumer(js, args)
        pull = await js.pull_subscribe_bind(args.durable, stream=STREAM)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while args.max is None or handled < args.max:
            if args.timeout is not None and loop.time() - idle_since > args.timeout:
                break
            batch_size = 10 if args.max is None else min(10, args.max - handled)
            try:
                batch = await pull.fetch(batch_size, timeout=1)
            except nats.errors.TimeoutError:
                continue
            for msg in batch:
                try:
                    event = json.loads(msg.data)
                except ValueError:
                    print(
                        f"skipped undecodable message on {msg.subject}", file=sys.stderr
                    )
                    await msg.ack()
                    continue
                if event["id"] in seen:
                    print(f"skipped duplicate event {event['id']}", file=sys.stderr)
                    await msg.ack()
                    continue
                handle(event)
                seen.add(event["id"])
                if args.seen_file is not None:
                    with args.seen_file.open("a", encoding="utf-8") as file:
                        file.write(f"{event['id']}\n")
                # Acknowledge only after handling: a crash before this line
                # gets the event redelivered, and the seen ids skip it if it
                # was handled after all.
                await msg.ack_sync()
                handled += 1
                idle_since = loop.time()
    finally:
        await nc.close()
    return 0


def main() -> int:
    args = parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
