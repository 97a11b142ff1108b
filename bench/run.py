"""Benchmark the intake path against baselines and write docs/benchmarks.md.

    .venv/bin/python -m bench.run [--seconds 8] [--backlog 20000] [--smoke]
    .venv/bin/python -m bench.run --running --output PAGE

Starts nats-server, PostgreSQL and the four services on free loopback ports,
drives them with wrk, and writes the results page and its plot. Every load
step is bounded by time (`--seconds`) and every loop by a count.

With `--running`, it uses services that already run on this machine, named
by the variables in `RunningServices.from_environment`, and runs the parts
that need no control of their processes (`RUNNING_PARTS`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx
import msgspec
import nats
import nats.errors
import nats.js.errors

from bench import (
    chain_worker,
    commit_delay,
    durability,
    micro,
    people,
    profile,
    report,
    wrk,
)
from bench.apps import CHAIN_CONSUMER, CHAIN_STREAM
from bench.forms import FORM_VALUES, form_bodies
from bench.system import (
    UNLIMITED,
    RunningServices,
    RunningServicesError,
    System,
    free_port,
    rss_mb,
)
from services.gateway import form_token, submission
from shared import messages, subjects
from shared.messaging import REQUEST_ID_HEADER
from shared.settings import env_switch

ROOT = Path(__file__).resolve().parent.parent

POST_KIND = "linkdesk POST form"

FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded", "origin": "null"}
"""Headers of the benchmark's form posts, the same that `post_forms.lua` sends."""

PEOPLE_CLIENTS = 32
"""Concurrent connections of the steps with many people or many tenants."""

PARTS = (
    "get",
    "post",
    "stored",
    "people",
    "body",
    "profile",
    "micro",
    "baselines",
    "paired",
    "backlog",
)
"""The parts of a run, in the order they run; `--only` picks some of them."""

RUNNING_PARTS = ("get", "post", "stored", "body", "micro", "baselines", "paired")
"""The parts of a run on running services by default. "people" adds 40,000
people and 1,000 tenants to them and runs only when `--only` names it. The
profile and the backlog need the gateway's process and a stop of the ticket
service, which only a run that started them has."""

LIMIT_PROBE_FORMS = 25
"""Forms that a run on running services posts first, one after the other:
more than the gateway's default limit of 20 per person, which would turn
the POST steps into 429 responses."""

PAIRED_ROUNDS = 3
PAIRED_CLIENTS = 32
CHAIN_GET_KIND = "chain GET, 2 lookups"
CHAIN_POST_KIND = "chain POST, 2 lookups + publish"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="length of each load step (s)"
    )
    parser.add_argument(
        "--clients",
        default="1,8,32,64",
        help="comma-separated numbers of concurrent connections (default 1,8,32,64)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=20_000,
        help="submissions published while the ticket service is stopped "
        "(default 20000)",
    )
    parser.add_argument(
        "--people",
        type=int,
        default=40_000,
        help="people added for the steps with many people (default 40000), "
        "enough that each is opened at most once per step",
    )
    parser.add_argument(
        "--tenants",
        type=int,
        default=1_000,
        help="tenants added for the steps with many tenants (default 1000)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=ROOT / "docs" / "benchmarks.md",
        help="results page to write; its plot goes to <folder>/benchmarks/",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the py-spy profile"
    )
    parser.add_argument(
        "--no-granian", action="store_true", help="skip the granian baseline"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated parts to run, of "
        + ",".join(PARTS)
        + "; a partial run prints its figures and writes no page",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a few requests per step, for a check that the command runs",
    )
    parser.add_argument(
        "--running",
        action="store_true",
        help="use services that already run on this machine, named by "
        "LINKDESK_GATEWAY_URL, LINKDESK_TENANT_URL, LINKDESK_PERSONNEL_URL, "
        "LINKDESK_TICKET_URL, NATS_URL and DATABASE_URL, with "
        "LINKDESK_ADMIN_TOKEN and GATEWAY_FORM_KEY; adds a tenant to them",
    )
    args = parser.parse_args(argv)
    if args.people < 1 or args.tenants < 1:
        parser.error("--people and --tenants must be at least 1")
    args.clients = [int(value) for value in args.clients.split(",")]
    args.only = [part for part in args.only.split(",") if part]
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown part {', '.join(unknown)}; choose from {PARTS}")
    args.services = None
    if args.running:
        impossible = sorted(set(args.only) - {*RUNNING_PARTS, "people"})
        if impossible:
            parser.error(
                f"--only: {', '.join(impossible)} needs services that this run "
                "starts itself; leave out --running"
            )
        try:
            args.services = RunningServices.from_environment(os.environ)
        except RunningServicesError as exc:
            parser.error(f"--running: {exc}")
    if args.smoke:
        args.seconds, args.clients, args.backlog = 1.0, [1, 2], 50
        args.people, args.tenants = 200, 20
        args.no_profile = args.no_granian = True
    return args


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    wrk_version = subprocess.run(
        [wrk.wrk_binary(), "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "wrk": wrk_version,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def memory(system: System) -> dict[str, float | None]:
    return {name: rss_mb(pid) for name, pid in system.pids().items()}


def load_step(
    system: System,
    kind: str,
    url: str,
    script: str,
    clients: int,
    seconds: float,
    env: dict[str, str] | None = None,
) -> dict[str, object]:
    before = memory(system)
    result = wrk.run(url, script, clients, seconds, env)
    after = memory(system)
    row = {"kind": kind, **asdict(result), "rate": result.rate}
    row["rss_before"], row["rss_after"] = before, after
    print(
        f"{kind:<28} c={clients:<3} {result.rate:8.0f}/s p50 {result.p50_ms:6.2f} ms"
        f" p99 {result.p99_ms:7.2f} ms errors {result.errors}",
        flush=True,
    )
    return row


def link_step(system: System, clients: int, seconds: float) -> dict[str, object]:
    """Open the benchmark's link from `clients` connections for `seconds`.

    The link goes to wrk in its environment: on its command line, the link's
    secret could be read by every local user.
    """
    parts = urlsplit(system.link)
    return load_step(
        system,
        "linkdesk GET link",
        system.url("gateway"),
        "get.lua",
        clients,
        seconds,
        {"BENCH_GET_PATH": f"{parts.path}?{parts.query}"},
    )


def mark_reused(row: dict[str, object], lines: int, what: str) -> None:
    """Set `reused` to `what` ("forms", "links") when the step sent more
    requests than its file had lines, so some went out a second time."""
    if int(row["requests"]) > lines:  # type: ignore[call-overload]
        row["reused"] = what


def forms_needed(expected_rate: float, seconds: float) -> int:
    """Return how many forms a POST step of `seconds` needs at twice
    `expected_rate` (at least 500 a second), at most 60,000."""
    return int(min(60_000, max(500, expected_rate * 2) * seconds))


def post_forms_step(
    system: System, clients: int, seconds: float, expected_rate: float, work: Path
) -> dict[str, object]:
    count = forms_needed(expected_rate, seconds)
    body_file = work / f"forms-{clients}.txt"
    body_file.write_text("\n".join(form_bodies(system, count)) + "\n")
    return post_bodies_step(system, POST_KIND, body_file, count, clients, seconds)


def post_bodies_step(
    system: System,
    kind: str,
    bodies: Path,
    count: int,
    clients: int,
    seconds: float,
) -> dict[str, object]:
    """Post the `count` form bodies listed in `bodies`, one per line, as a
    load step. The row's `reused` is set when some went out a second time,
    and `stored` contains the acceptance to commit delays of its tickets."""
    since = dt.datetime.now(dt.UTC)
    row = load_step(
        system,
        kind,
        f"{system.url('gateway')}/public/tickets",
        "post_forms.lua",
        clients,
        seconds,
        {"BENCH_BODY_FILE": str(bodies)},
    )
    row["forms"] = count
    mark_reused(row, count, "forms")
    if system.running is not None and row["errors"]:
        failed = f"{row['errors']} posts of {kind}"
        raise RuntimeError(_rejected_posts_message(system, failed))
    # The wait for the consumer also keeps a step's backlog out of the next.
    row["stored"] = stored = asyncio.run(
        stored_delays(system, since, dt.datetime.now(dt.UTC))
    )
    print(
        f"{'  accepted to committed':<28} {stored['rows']} tickets,"
        f" p50 {report.fmt(stored['p50_ms'])} ms p99 {report.fmt(stored['p99_ms'])} ms",
        flush=True,
    )
    return row


async def ticket_service_idle(system: System, max_seconds: float) -> float:
    """Wait until the ticket consumer has nothing pending and the outbox relay
    has sent every event, so that one step's work does not spill into the
    next. Return the seconds waited."""
    started = time.monotonic()
    await consumer_idle(
        system,
        subjects.TICKET_STREAM,
        subjects.TICKET_STORE_CONSUMER,
        started + max_seconds,
    )
    if not env_switch("TICKET_OUTBOX_RELAY", True):
        return time.monotonic() - started
    connection = await asyncpg.connect(system.database_url)
    try:
        while time.monotonic() - started < max_seconds:
            unsent = await connection.fetchval(
                "SELECT EXISTS (SELECT FROM ticket.outbox WHERE sent_at IS NULL)"
            )
            if not unsent:
                break
            await asyncio.sleep(0.2)
    finally:
        await connection.close()
    return time.monotonic() - started


async def consumer_idle(
    system: System, stream: str, consumer: str, deadline: float
) -> None:
    """Wait until `consumer` of `stream` has no message waiting or unacknowledged,
    or until `deadline` (monotonic)."""
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    try:
        while time.monotonic() < deadline:
            info = await js.consumer_info(stream, consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.2)
    finally:
        await nc.close()


async def accepted_to_stored(
    system: System, rate: float, seconds: float
) -> dict[str, object]:
    """Post forms at `rate` per second for `seconds`, open loop, and measure
    each ticket's time from acceptance until its row was committed."""
    await ticket_service_idle(system, 300)
    count = max(5, int(rate * seconds))
    bodies = form_bodies(system, count)
    url = f"{system.url('gateway')}/public/tickets"
    statuses: dict[int, int] = {}
    since = dt.datetime.now(dt.UTC)
    async with httpx.AsyncClient(
        timeout=10, limits=httpx.Limits(max_connections=64)
    ) as client:

        async def post(body: str, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            response = await client.post(url, content=body, headers=FORM_HEADERS)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        start = time.monotonic() + 0.2
        await asyncio.gather(
            *(post(body, start + i / rate) for i, body in enumerate(bodies))
        )
    rejected = count - statuses.get(303, 0)
    if system.running is not None and rejected:
        failed = f"{rejected} open-loop posts"
        raise RuntimeError(_rejected_posts_message(system, failed))
    delays = await stored_delays(system, since, dt.datetime.now(dt.UTC))
    return {"rate": rate, "posted": count, "statuses": statuses, **delays}


async def stored_delays(
    system: System, since: dt.datetime, until: dt.datetime
) -> dict[str, float | int | None]:
    """Wait until the ticket consumer is idle, then return the acceptance to
    commit delays of the tickets submitted from `since` until `until`."""
    await ticket_service_idle(system, 120)
    return await commit_delay.commit_delays(system.database_url, since, until)


async def backlog_drain(system: System, count: int) -> dict[str, object]:
    """Publish `count` submissions with the ticket service stopped, start it,
    and time until its consumer has stored them all (at most 600 s)."""
    await ticket_service_idle(system, 300)
    system.stack.stop("ticket")
    context = form_token.verify(system.form_key, system.fetch_form_token())
    nc = await nats.connect(system.nats_url)
    js = nc.jetstream()
    published = 0
    started = time.monotonic()

    async def publisher(offset: int) -> None:
        nonlocal published
        for _ in range(offset, count, 64):
            fresh = msgspec.structs.replace(context, submission_id=str(uuid.uuid4()))
            values = {"category": context.categories[0], **FORM_VALUES}
            event = submission.build_event(fresh, values)
            await js.publish(
                subjects.ticket_submitted(event.data.tenant_id),
                messages.ENCODER.encode(event),
                headers={
                    "Nats-Msg-Id": event.data.submission_id,
                    REQUEST_ID_HEADER: "bench-backlog",
                },
                stream=subjects.TICKET_STREAM,
            )
            published += 1

    await asyncio.gather(*(publisher(offset) for offset in range(64)))
    publish_seconds = time.monotonic() - started
    await nc.close()
    connection = await asyncpg.connect(system.database_url)
    before = await connection.fetchval(
        "SELECT coalesce(max(id), 0) FROM ticket.tickets"
    )
    drain_started = time.monotonic()
    system.stack.start("ticket")
    ready_seconds = time.monotonic() - drain_started
    stored = await stored_since(connection, before, count, drain_started + 600)
    drain_seconds = time.monotonic() - drain_started
    # The relay gives way while the consumer has a backlog, so the time until
    # every `created` event is out is reported beside the drain.
    unsent = None
    while env_switch("TICKET_OUTBOX_RELAY", True) and (
        time.monotonic() - drain_started < 600
    ):
        unsent = await connection.fetchval(
            "SELECT EXISTS (SELECT FROM ticket.outbox WHERE sent_at IS NULL)"
        )
        if not unsent:
            break
        await asyncio.sleep(0.25)
    published_seconds = time.monotonic() - drain_started if unsent is False else None
    await connection.close()
    return {
        "count": count,
        "publish_seconds": publish_seconds,
        "stored": stored,
        "seconds": drain_seconds,
        "events_published_seconds": published_seconds,
        "service_start_seconds": ready_seconds,
        "rate": stored / (drain_seconds - ready_seconds)
        if drain_seconds > ready_seconds
        else 0.0,
    }


async def stored_since(
    connection: asyncpg.Connection, after_id: int, count: int, deadline: float
) -> int:
    """Wait until `count` tickets with an id above `after_id` are stored, or
    until `deadline` (monotonic), and return how many are stored.

    A `count(*)` of the whole table every quarter second read every ticket
    that earlier steps had left, on the server whose drain it timed. The
    highest id is an index lookup. Ids can have gaps, so an exact count
    confirms what the highest id suggests.
    """
    stored = 0
    while time.monotonic() < deadline:
        highest = await connection.fetchval("SELECT max(id) FROM ticket.tickets")
        if highest is not None and highest - after_id >= count:
            stored = await connection.fetchval(
                "SELECT count(*) FROM ticket.tickets WHERE id > $1", after_id
            )
            if stored >= count:
                return int(stored)
        await asyncio.sleep(0.25)
    return int(
        await connection.fetchval(
            "SELECT count(*) FROM ticket.tickets WHERE id > $1", after_id
        )
    )


def _rejected_posts_message(system: System, failed: str) -> str:
    """Return the error for `failed` posts ("12 posts of ...") of a run on
    running services."""
    return (
        f"{failed} got a status of 400 or more or no answer from the gateway at "
        f"{system.url('gateway')}. A running gateway keeps its submission "
        f"limits: start it with GATEWAY_SUBMISSIONS_PER_PERSON={UNLIMITED} and "
        f"GATEWAY_SUBMISSIONS_PER_TENANT={UNLIMITED} for the run, and see its "
        "log for other causes"
    )


def check_limits(system: System) -> None:
    """Post `LIMIT_PROBE_FORMS` forms and raise unless each was accepted.

    A running gateway keeps its own submission limits, and a step of 429
    answers would measure the limit, not the intake.
    """
    url = f"{system.url('gateway')}/public/tickets"
    with httpx.Client(timeout=10) as client:
        for body in form_bodies(system, LIMIT_PROBE_FORMS):
            status = client.post(url, content=body, headers=FORM_HEADERS).status_code
            if status == 429:
                msg = (
                    f"the gateway at {system.url('gateway')} limited the "
                    "benchmark's posts (429); start it with "
                    f"GATEWAY_SUBMISSIONS_PER_PERSON={UNLIMITED} and "
                    f"GATEWAY_SUBMISSIONS_PER_TENANT={UNLIMITED} for the run"
                )
                raise RuntimeError(msg)
            if status != 303:
                msg = f"a benchmark form got {status} from the gateway, not 303"
                raise RuntimeError(msg)


def large_body(system: System) -> dict[str, object]:
    """POST a 20 MB form body to the gateway and compare its RSS, where the
    gateway's process is known."""
    gateway_pid = system.pids().get("gateway")
    before = rss_mb(gateway_pid) if gateway_pid else None
    body = b"description=" + b"a" * (20 * 1024 * 1024)
    try:
        response = httpx.post(
            f"{system.url('gateway')}/public/tickets",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
            timeout=30,
        )
        status: int | str = response.status_code
    except httpx.HTTPError as exc:
        status = f"connection error: {exc!r}"
    time.sleep(0.5)
    after = rss_mb(gateway_pid) if gateway_pid else None
    return {"status": status, "rss_before": before, "rss_after": after}


def baseline_servers(
    system: System, args: argparse.Namespace, work: Path
) -> list[dict[str, object]]:
    """Measure the bare app under uvicorn (h11, httptools) and granian, and
    the minimal chain under uvicorn with the services' HTTP protocol."""
    rows: list[dict[str, object]] = []
    post_env = json_post_env(work)
    servers: list[tuple[str, list[str]]] = [
        ("uvicorn h11", ["-m", "bench.serve", "bare_app", "{port}", "h11"]),
        ("uvicorn httptools", ["-m", "bench.serve", "bare_app", "{port}", "httptools"]),
    ]
    if not args.no_granian:
        servers.append(
            (
                "granian",
                [
                    "-m",
                    "granian",
                    "--interface",
                    "asgi",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "--loop",
                    "uvloop",
                    "--workers",
                    "1",
                    "--http",
                    "1",
                    "--no-ws",
                    "bench.apps:bare_app",
                ],
            )
        )
    for label, template in servers:
        port = free_port()
        system.start_helper(
            [part.replace("{port}", str(port)) for part in template], port
        )
        url = f"http://127.0.0.1:{port}/bare"
        for clients in args.clients:
            rows.append(
                load_step(
                    system, f"bare GET, {label}", url, "get.lua", clients, args.seconds
                )
            )
            rows.append(
                load_step(
                    system,
                    f"bare POST, {label}",
                    url,
                    "post_body.lua",
                    clients,
                    args.seconds,
                    post_env,
                )
            )
        system.stop_helpers()

    url = start_chain(system)
    for clients in args.clients:
        rows.append(
            load_step(system, CHAIN_GET_KIND, url, "get.lua", clients, args.seconds)
        )
        rows.append(
            load_step(
                system,
                CHAIN_POST_KIND,
                url,
                "post_body.lua",
                clients,
                args.seconds,
                post_env,
            )
        )
    system.stop_helpers()
    return rows


def json_post_env(work: Path) -> dict[str, str]:
    """Write the baselines' JSON body and return wrk's settings to post it."""
    json_body = work / "submission.json"
    json_body.write_text(
        json.dumps(
            {
                "tenant": str(uuid.UUID(int=1)),
                "person": "004711",
                "subject": FORM_VALUES["subject"],
                "description": FORM_VALUES["description"],
            }
        )
    )
    return {
        "BENCH_BODY_FILE": str(json_body),
        "BENCH_CONTENT_TYPE": "application/json",
    }


def leave_running(system: System, selected: set[str]) -> None:
    """Switch off the intake of the tenant that the run added, and remove
    the chain's stream and table. Each failure is printed, and the rest of
    the cleanup still runs."""
    if hasattr(system, "demo_data"):
        tenant = system.demo_data.tenant_id
        try:
            with system.admin_client("tenant") as tenants:
                tenants.post(
                    f"/admin/tenants/{tenant}/intake/disable"
                ).raise_for_status()
        except httpx.HTTPError as exc:
            print(f"bench: intake of tenant {tenant} still on: {exc!r}", flush=True)
    if {"baselines", "paired"} & selected:
        try:
            asyncio.run(remove_chain(system))
        except (OSError, nats.errors.Error, asyncpg.PostgresError) as exc:
            msg = f"bench: {CHAIN_STREAM} or {chain_worker.TABLE} not removed: {exc!r}"
            print(msg, flush=True)


async def remove_chain(system: System) -> None:
    """Delete the chain's stream and table, which running services keep."""
    nc = await nats.connect(system.nats_url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(CHAIN_STREAM)
    finally:
        await nc.close()
    connection = await asyncpg.connect(system.database_url)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {chain_worker.TABLE}")
    finally:
        await connection.close()


def start_chain(system: System) -> str:
    """Start the minimal chain's worker and app, and return the app's URL."""
    system.start_helper(
        ["-m", "bench.chain_worker", system.nats_url, system.database_url]
    )
    port = free_port()
    system.start_helper(["-m", "bench.serve", "chain_app", str(port), "service"], port)
    return f"http://127.0.0.1:{port}/chain"


def paired_steps(
    system: System, args: argparse.Namespace, work: Path, expected: float
) -> list[dict[str, object]]:
    """Run the chain's steps and ours at `PAIRED_CLIENTS` clients in turns.

    A shared machine's speed drifts by tens of percent within minutes, and
    the other baseline steps run many minutes after ours. Here each of our
    steps runs right after the chain's, and the page reports the ratio of
    every round.
    """
    post_env = json_post_env(work)
    url = start_chain(system)
    clients, seconds = PAIRED_CLIENTS, args.seconds
    rows: list[dict[str, object]] = []
    try:
        for turn in range(PAIRED_ROUNDS):
            chain_post = load_step(
                system,
                CHAIN_POST_KIND,
                url,
                "post_body.lua",
                clients,
                seconds,
                post_env,
            )
            # As our POST steps wait for the ticket service, the chain's
            # waits for its worker, so neither backlog falls into the next.
            asyncio.run(
                consumer_idle(
                    system, CHAIN_STREAM, CHAIN_CONSUMER, time.monotonic() + 60
                )
            )
            steps = [
                chain_post,
                post_forms_step(system, clients, seconds, expected, work),
                load_step(system, CHAIN_GET_KIND, url, "get.lua", clients, seconds),
                link_step(system, clients, seconds),
            ]
            rows += [{**step, "round": turn} for step in steps]
    finally:
        system.stop_helpers()
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = set(args.only or (RUNNING_PARTS if args.running else PARTS))
    if args.no_profile:
        selected.discard("profile")
    results: dict[str, object] = {
        "machine": machine(),
        "args": {
            "seconds": args.seconds,
            "clients": args.clients,
            "backlog": args.backlog,
            "smoke": args.smoke,
            "running": args.running,
        },
    }
    # SIGTERM ends the run through the cleanup below, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="linkdesk-bench-"))
    system = System(work / "data", running=args.services)
    print(f"bench: working folder {work}", flush=True)
    try:
        system.start()
        if args.running:
            check_limits(system)
        results["rss_idle"] = memory(system)
        run_parts(system, args, selected, work, results)
        results["rss_end"] = memory(system)
    finally:
        system.stop()
        if args.running:
            leave_running(system, selected)
        # The stores of a backlog run take gigabytes, and the prepared forms
        # a hundred megabytes or more. The link files and the demo data carry
        # the benchmark tenants' secrets. The logs stay for a look at a
        # failed run.
        for store in (work / "data" / "nats", work / "data" / "postgres"):
            shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(work / durability.STORE_FOLDER, ignore_errors=True)
        for prepared in [
            *work.glob("forms-*.txt"),
            *work.glob("*-links.txt"),
            work / "data" / "demo.json",
            work / "submission.json",
        ]:
            prepared.unlink(missing_ok=True)
        (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
        print(f"bench: raw results in {work / 'results.json'}", flush=True)
    if args.only:
        print("bench: partial run, no page written", flush=True)
        return 0
    report.write(results, args.output)
    print(f"bench: wrote {args.output}", flush=True)
    return 0


def run_parts(
    system: System,
    args: argparse.Namespace,
    selected: set[str],
    work: Path,
    results: dict[str, object],
) -> None:
    """Run the selected parts and add their figures to `results`."""
    product: list[dict[str, object]] = []
    results["product"] = product
    if "get" in selected:
        for clients in args.clients:
            product.append(link_step(system, clients, args.seconds))
    # POST steps prepare forms for this rate, twice over, and each measured
    # POST rate raises it. Too low a guess reuses forms, and the gateway
    # treats those as repeats, which skips the publish and inflates the
    # step's rate.
    expected = 2_000.0
    if "post" in selected:
        for clients in args.clients:
            row = post_forms_step(system, clients, args.seconds, expected, work)
            expected = max(expected, float(row["rate"]))  # type: ignore[arg-type]
            product.append(row)
    if "stored" in selected:
        # Half of the peak POST rate of this run; 500/s without POST steps.
        rates = [float(r["rate"]) for r in product if r["kind"] == POST_KIND]  # type: ignore[arg-type]
        peak = max(rates, default=1000.0)
        results["accepted_to_stored"] = asyncio.run(
            accepted_to_stored(system, max(1.0, peak / 2), args.seconds)
        )
        print(f"accepted to stored: {results['accepted_to_stored']}", flush=True)
    if "people" in selected:
        clients = 2 if args.smoke else PEOPLE_CLIENTS
        product += many_people_steps(system, args, work, clients)
        product += many_tenants_steps(system, args, work, clients, expected)
    if "body" in selected:
        results["large_body"] = large_body(system)
        print(f"20 MB body: {results['large_body']}", flush=True)
    if "profile" in selected:
        results["profile"] = profile.profile_gateway(system, args, work, form_bodies)
    if "micro" in selected:
        results["micro"] = micro_baselines(system, args, work)
    if "baselines" in selected:
        results["baselines"] = baseline_servers(system, args, work)
    if "paired" in selected:
        results["paired"] = paired_steps(system, args, work, expected)
    if "backlog" in selected:
        results["backlog"] = asyncio.run(backlog_drain(system, args.backlog))
        print(f"backlog: {results['backlog']}", flush=True)


def many_people_steps(
    system: System, args: argparse.Namespace, work: Path, clients: int
) -> list[dict[str, object]]:
    """Open links and post forms of many different people.

    With enough people (`--people`), each link is opened at most once, so
    every person's lookup misses the gateway's cache and goes to the
    personnel service; the row says `reused` otherwise. The tenant's
    secret is the same for all and stays cached. The forms then come from the
    same people, whose lookups the cache holds only in part because it
    keeps 10,000 entries. Each person also has rate-limit counters of
    their own.
    """
    added = people.add_people(system, args.people)
    paths = work / "people-links.txt"
    people.write_link_paths(system, added, paths)
    rows = [get_paths_step(system, people.GET_KIND, paths, clients, args.seconds)]
    rows[0]["links"] = len(added)
    mark_reused(rows[0], len(added), "links")
    bodies = work / "forms-people.txt"
    people.write_form_bodies(system, added, bodies)
    rows.append(
        post_bodies_step(
            system, people.POST_KIND, bodies, len(added), clients, args.seconds
        )
    )
    return rows


def many_tenants_steps(
    system: System,
    args: argparse.Namespace,
    work: Path,
    clients: int,
    expected_rate: float,
) -> list[dict[str, object]]:
    """Open links and post forms of many tenants with one person each.

    Each tenant's link is opened many times, so its lookups stay cached and
    the GET step measures the form page of each tenant. The posts then take
    the tenants in rotation, so the gateway checks the tenant, secret and
    person of a different tenant on each one. Their forms are prepared for
    twice `expected_rate`, which the POST steps of one person raise to their
    highest rate. The step raises if it still ran out, because a repeated
    form adds no ticket and would inflate the rate.
    """
    paths = people.add_tenants(system, args.tenants)
    link_file = work / "tenant-links.txt"
    link_file.write_text("".join(path + "\n" for path in paths))
    opened = get_paths_step(
        system, people.TENANTS_GET_KIND, link_file, clients, args.seconds
    )
    opened["tenants"] = args.tenants
    per_tenant = math.ceil(forms_needed(expected_rate, args.seconds) / args.tenants)
    bodies = work / "forms-tenants.txt"
    people.write_tenant_form_bodies(system, paths, per_tenant, bodies)
    count = per_tenant * args.tenants
    posted = post_bodies_step(
        system, people.TENANTS_POST_KIND, bodies, count, clients, args.seconds
    )
    posted["tenants"] = args.tenants
    # NOTE: this compares totals. Each wrk thread posts its own share of the
    # lines, so a thread far faster than the other could repeat forms unseen.
    if posted.get("reused"):
        msg = (
            f"{people.TENANTS_POST_KIND}: {posted['requests']} posts "
            f"({posted['rate']:.0f}/s) but only {count} forms prepared. The "
            "forms posted twice added no ticket, so the rate is invalid. "
            "Prepare more forms in forms_needed() and run `--only people` again."
        )
        raise RuntimeError(msg)
    return [opened, posted]


def get_paths_step(
    system: System, kind: str, paths: Path, clients: int, seconds: float
) -> dict[str, object]:
    """Open the gateway paths listed in `paths`, one per line, as a load step."""
    return load_step(
        system,
        kind,
        system.url("gateway"),
        "get_paths.lua",
        clients,
        seconds,
        {"BENCH_PATH_FILE": str(paths)},
    )


def micro_baselines(
    system: System, args: argparse.Namespace, work: Path
) -> list[dict[str, object]]:
    """Measure the client-side baselines: NATS, JetStream and asyncpg."""
    count = 200 if args.smoke else 20_000
    seconds = min(10.0, args.seconds)
    rates = asyncio.run(
        micro.run_all(system.nats_url, system.database_url, count, seconds)
    )
    rates += durability.sync_always_rates(work, count, seconds)
    rows: list[dict[str, object]] = []
    for rate in rates:
        rows.append({**asdict(rate), "per_second": rate.per_second})
        print(
            f"{rate.name:<40} c={rate.concurrency:<3} {rate.per_second:8.0f}/s",
            flush=True,
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
