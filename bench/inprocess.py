"""Measure the gateway's CPU time per request, without a server in between.

    .venv/bin/python -m bench.inprocess {get,post} [--requests 20000] [--rounds 3]

Starts nats-server, PostgreSQL and the services on free loopback ports as
`bench.run` does, builds a second gateway app in this process, and calls it
as an ASGI app from `CALLERS` concurrent tasks: the link for `get`, fresh
forms for `post`. Prints the CPU time per request of each round. Without
uvicorn, sockets and wrk, a change to the gateway's own code shows with less
noise than in the load steps. The figures still move with the machine, so
compare rounds run back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from bench.forms import form_bodies
from bench.system import System

CALLERS = 16
"""Concurrent requests, as a few busy connections would bring them."""

WARM_UP = 500
"""Requests before the first measured round, to fill the gateway's caches."""


def _scope(method: str, url: str, body_length: int) -> dict[str, Any]:
    """Return the ASGI scope that uvicorn would build for the request."""
    parts = urllib.parse.urlsplit(url)
    headers = [
        (b"host", parts.netloc.encode("ascii")),
        (b"accept-language", b"de-CH,de;q=0.9"),
    ]
    if method == "POST":
        headers += [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(body_length).encode("ascii")),
            (b"origin", b"null"),
        ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": parts.path,
        "raw_path": parts.path.encode("ascii"),
        "root_path": "",
        "query_string": parts.query.encode("ascii"),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


async def _call(app: Any, method: str, url: str, body: bytes) -> int:
    """Send one request to `app` and return the response status."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            # The app reads nothing after the body; wait as a client would.
            await asyncio.Event().wait()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(_scope(method, url, len(body)), receive, send)
    return status


async def _round(
    app: Any, method: str, url: str, bodies: Iterator[bytes], count: int
) -> tuple[float, dict[int, int]]:
    """Send `count` requests from `CALLERS` tasks. Return the CPU seconds
    used and the count of each status."""
    statuses: dict[int, int] = {}

    async def caller(requests: int) -> None:
        for _ in range(requests):
            # Each request starts in a loop step of its own, as under uvicorn.
            # Without it, a round of cached GETs never yields, and a signal
            # waits until the round ends.
            await asyncio.sleep(0)
            status = await _call(app, method, url, next(bodies))
            statuses[status] = statuses.get(status, 0) + 1

    started = time.process_time()
    await asyncio.gather(*(caller(count // CALLERS) for _ in range(CALLERS)))
    return time.process_time() - started, statuses


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("method", choices=["get", "post"])
    parser.add_argument(
        "--requests",
        type=int,
        default=20_000,
        help=f"requests per round, at least {CALLERS} (default 20000)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="default 3")
    args = parser.parse_args(argv)
    if args.requests < CALLERS or args.rounds < 1:
        parser.error(f"--requests must be at least {CALLERS} and --rounds at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    requests = args.requests // CALLERS * CALLERS
    # SIGTERM ends the run through the cleanup below, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="linkdesk-bench-inprocess-"))
    try:
        # The app logs to a file, as the service logs to its stderr. The file
        # stays open until the servers, which log their stop, are stopped.
        with (work / "gateway-inprocess.log").open("w") as log_file:
            system = System(work / "data")
            try:
                _run(system, args, requests, log_file)
            finally:
                system.stop()
                logging.getLogger().handlers.clear()
    finally:
        # The demo data and the stores contain the benchmark tenant's secret.
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _run(
    system: System, args: argparse.Namespace, requests: int, log_file: TextIO
) -> None:
    system.start()
    if args.method == "get":
        method, url = "GET", system.link
        bodies: Iterator[bytes] = iter(lambda: b"", None)
    else:
        method, url = "POST", f"{system.stack.url('gateway')}/public/tickets"
        total = WARM_UP + requests * args.rounds
        bodies = (body.encode() for body in form_bodies(system, total))
    try:
        asyncio.run(_measure(system, args, method, url, bodies, requests, log_file))
    except asyncio.CancelledError:
        print("stopped by a signal", file=sys.stderr, flush=True)


async def _measure(
    system: System,
    args: argparse.Namespace,
    method: str,
    url: str,
    bodies: Iterator[bytes],
    requests: int,
    log_file: TextIO,
) -> None:
    # The app reads its settings from the environment, as the service does.
    os.environ.update(system.stack.services["gateway"].env)
    from services.gateway.app import create_app
    from shared import logs

    with contextlib.redirect_stderr(log_file):
        logs.configure("gateway")
    # While the loop runs, a signal cancels the measurement, so that the app's
    # lifespan ends before the servers stop.
    measurement = asyncio.current_task()
    assert measurement is not None
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(stop_signal, measurement.cancel)
    app = create_app()
    async with app.lifespan():
        # As a service does once it has started (shared/runtime.py).
        gc.collect()
        gc.freeze()
        await _round(app, method, url, bodies, WARM_UP)
        for number in range(1, args.rounds + 1):
            seconds, statuses = await _round(app, method, url, bodies, requests)
            print(
                f"round {number}: {args.method.upper()} {requests} requests,"
                f" {seconds / requests * 1e6:.1f} µs CPU each, statuses {statuses}",
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
