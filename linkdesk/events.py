"""`linkdesk events`: follow ticket events on the stream, and generate their schemas."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import re
import sys
from pathlib import Path

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.js.api import ConsumerConfig, DeliverPolicy

from linkdesk import schemas
from linkdesk.api_client import CommandError
from shared import json_errors, settings, subjects

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """Parse `--since`: an RFC 3339 time, or a duration back from now (`15m`).

    A time without an offset is local time. Raises CommandError naming the value.
    """
    match = _DURATION.match(text.strip())
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(seconds=seconds)
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        msg = (
            f"invalid --since {text!r}: expected a time such as "
            "2026-03-01T08:00:00+01:00 or a duration such as 30s, 15m, 2h or 7d"
        )
        raise CommandError(msg) from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def tail_subject(tenant: str | None, kind: str | None) -> str:
    """Return the subject filter of `events tail`."""
    if kind:
        return subjects.ticket_event(tenant or "*", kind)
    if tenant:
        return subjects.tenant_ticket_events(tenant)
    return subjects.TICKET_EVENTS_WILDCARD


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = commands.add_parser(
        "events", help="follow ticket events, or generate their schemas"
    ).add_subparsers(dest="events_command", required=True)

    tail = group.add_parser(
        "tail",
        help="print ticket events as JSON lines as they arrive",
        description="Print ticket events from the JetStream stream as JSON "
        "lines, through an ordered consumer that is deleted when the command "
        "stops. Without --since only new events are printed. Stops on Ctrl-C, "
        "or after --max events or --timeout seconds.",
    )
    tail.add_argument("--tenant", help="only this tenant's events (tenant id)")
    tail.add_argument(
        "--type",
        dest="kind",
        choices=subjects.TICKET_EVENT_KINDS,
        help="only this event type",
    )
    tail.add_argument(
        "--since",
        help="start at this time: RFC 3339 (without offset: local time) or a "
        "duration back from now such as 30s, 15m, 2h, 7d",
    )
    tail.add_argument(
        "--max", type=int, default=None, help="stop after this many events"
    )
    tail.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="stop after this many seconds in total",
    )
    tail.add_argument(
        "--nats-url",
        default=None,
        help="NATS server(s), comma-separated (default: $NATS_URL or "
        "nats://127.0.0.1:4222)",
    )
    tail.set_defaults(handler=_tail)

    generate = group.add_parser(
        "schemas",
        help="check or write the JSON Schemas and AsyncAPI document of the events",
        description=schemas.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument(
        "--write",
        action="store_true",
        help="write the files; without it, only check and exit 1 when one is "
        "out of date",
    )
    generate.add_argument(
        "--out",
        type=Path,
        default=schemas.DEFAULT_DIR,
        help=f"folder (default {schemas.DEFAULT_DIR})",
    )
    generate.set_defaults(handler=_schemas)


def _schemas(args: argparse.Namespace) -> int:
    return schemas.run(args.out, check=not args.write)


def _tail(args: argparse.Namespace) -> int:
    if args.max is not None and args.max < 1:
        msg = f"invalid --max {args.max}: expected 1 or more"
        raise CommandError(msg)
    if args.timeout is not None and args.timeout <= 0:
        msg = f"invalid --timeout {args.timeout}: expected more than 0 seconds"
        raise CommandError(msg)
    since = parse_since(args.since) if args.since else None
    servers = (
        [part.strip() for part in args.nats_url.split(",") if part.strip()]
        if args.nats_url
        else settings.nats_servers()
    )
    try:
        asyncio.run(
            follow(
                servers,
                tail_subject(args.tenant, args.kind),
                since=since,
                max_events=args.max,
                timeout=args.timeout,
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0


async def follow(
    servers: list[str],
    subject: str,
    *,
    since: dt.datetime | None,
    max_events: int | None,
    timeout: float | None,
) -> int:
    """Print events on `subject` until `max_events` or `timeout`; return the count."""
    try:
        nc = await nats.connect(
            servers=servers,
            name="linkdesk-events-tail",
            connect_timeout=5,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
        )
    except (nats.errors.Error, OSError) as exc:
        msg = f"cannot connect to NATS at {', '.join(servers)}: {exc!r}"
        raise CommandError(msg) from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None else None
    count = 0
    try:
        try:
            subscription = await nc.jetstream().subscribe(
                subject,
                stream=subjects.TICKET_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.BY_START_TIME
                if since
                else DeliverPolicy.NEW,
                config=ConsumerConfig(opt_start_time=since) if since else None,
            )
        except nats.js.errors.NotFoundError:
            error = (
                f"stream {subjects.TICKET_STREAM} not found; "
                "is the ticket service running?"
            )
            raise CommandError(error) from None
        start = f"from {since.isoformat()}" if since else "new events only"
        # Scripts wait for this line before they publish what they expect.
        print(f"following {subject}, {start}", file=sys.stderr, flush=True)
        while max_events is None or count < max_events:
            wait = 1.0
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    break
            try:
                message = await subscription.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                continue
            _print_event(
                message.subject, message.data, message.metadata.sequence.stream
            )
            count += 1
    finally:
        await nc.close()
    return count


def _print_event(subject: str, data: bytes, sequence: int) -> None:
    try:
        event = msgspec.json.decode(data)
    except json_errors.UNDECODABLE as exc:
        problem = json_errors.explain_decode_error(data, exc)
        print(
            f"skipped undecodable message {sequence} on {subject}: {problem.message}",
            file=sys.stderr,
        )
        return
    print(msgspec.json.encode(event).decode(), flush=True)
