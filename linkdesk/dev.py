"""`linkdesk dev`: the whole system on one machine, from PyPI wheels only.

Starts nats-server with JetStream and PostgreSQL with their data under one
folder, then the four services as separate processes, creates a demo tenant
and person, and prints a working link. Ctrl-C stops everything in order;
the next start reuses the data.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
from pathlib import Path

import httpx

from linkdesk import demo, links
from linkdesk.processes import DEFAULT_PORTS, SERVICES, ServiceStartError, Stack
from shared.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    EmbeddedServerError,
    port_in_use,
)

DEFAULT_DATA_DIR = ".linkdesk"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "dev",
        help="start the whole system on this machine and print a working link",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=run)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("LINKDESK_DATA_DIR", DEFAULT_DATA_DIR)),
        help="folder for the NATS store, the PostgreSQL cluster, logs and the "
        "demo credentials (default: ./.linkdesk or $LINKDESK_DATA_DIR)",
    )
    parser.add_argument(
        "--nats-port", type=int, default=4222, help="NATS client port (default 4222)"
    )
    parser.add_argument(
        "--postgres-port",
        type=int,
        default=55432,
        help="PostgreSQL port on 127.0.0.1 (default 55432)",
    )
    parser.add_argument(
        "--gateway-port",
        type=int,
        default=DEFAULT_PORTS["gateway"],
        help="public HTTP port of the gateway (default 8080); the tenant, "
        "personnel and ticket services take the next three ports",
    )
    parser.add_argument(
        "--exit-after-start",
        action="store_true",
        help="stop again right after printing the link (for scripted checks)",
    )


def _credentials(path: Path) -> dict[str, str]:
    """Load or create the admin token and form key of this data folder."""
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    created = {
        "admin_token": secrets.token_urlsafe(32),
        "form_key": secrets.token_urlsafe(32),
    }
    path.write_text(json.dumps(created, indent=2))
    os.chmod(path, 0o600)
    return created


def _print_summary(
    stack: Stack,
    nats: EmbeddedNats,
    postgres: EmbeddedPostgres,
    token: str,
    link: str,
    tenant_id: str,
) -> None:
    lines = [
        "",
        "linkdesk is running. Press Ctrl-C to stop everything.",
        "",
        f"  Ticket form (demo person {demo.DEMO_PERSON}):",
        f"    {link}",
        "",
        "  Services:",
    ]
    for name in SERVICES:
        lines.append(f"    {name:<10} {stack.url(name)}")
    lines += [
        "",
        f"  NATS_URL={nats.url}",
        f"  DATABASE_URL={postgres.url}",
        f"  Admin token: {token}",
        "",
        "  For the linkdesk admin commands in another terminal:",
        f"    export LINKDESK_ADMIN_TOKEN={token}",
        f"    export LINKDESK_GATEWAY_URL={stack.url('gateway')}"
        f" LINKDESK_TENANT_URL={stack.url('tenant')}",
        f"    export LINKDESK_PERSONNEL_URL={stack.url('personnel')}"
        f" LINKDESK_TICKET_URL={stack.url('ticket')}",
        "",
        "  See the demo tenant's tickets:",
        f'    curl -H "Authorization: Bearer {token}" \\',
        f"      {stack.url('ticket')}/admin/tenants/{tenant_id}/tickets",
        f"  Admin API description (OpenAPI): {stack.url('tenant')}/schema/openapi.json",
        f"  Logs: {stack.log_dir}/",
        "",
    ]
    _say("\n".join(lines))


def _busy_ports(args: argparse.Namespace, ports: dict[str, int]) -> str:
    """Return a message naming the first needed port that is taken, or ""."""
    wanted = [
        (args.nats_port, "nats-server", "--nats-port"),
        (args.postgres_port, "PostgreSQL", "--postgres-port"),
        *(
            (port, f"the {name} service", "--gateway-port")
            for name, port in ports.items()
        ),
    ]
    for port, what, option in wanted:
        if port_in_use(port):
            return (
                f"port {port} for {what} is already in use on 127.0.0.1 "
                f"(another linkdesk dev?); stop that program or choose another "
                f"port with {option}"
            )
    return ""


def run(args: argparse.Namespace) -> int:
    """Start everything, wait for Ctrl-C or SIGTERM, stop everything."""
    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    credentials = _credentials(data_dir / "credentials.json")
    stop = threading.Event()
    # SIGHUP comes when the terminal closes. By default it would end this
    # process without stopping the servers and services it started.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: stop.set())

    nats = EmbeddedNats(data_dir / "nats", port=args.nats_port)
    postgres = EmbeddedPostgres(data_dir / "postgres", port=args.postgres_port)
    ports = {
        name: args.gateway_port + offset
        for offset, name in enumerate(("gateway", "tenant", "personnel", "ticket"))
    }
    busy = _busy_ports(args, ports)
    if busy:
        print(f"linkdesk dev: {busy}", file=sys.stderr)
        return 2
    stack: Stack | None = None
    try:
        try:
            _say("Starting nats-server and PostgreSQL ...")
            nats.start()
            postgres.start()
            stack = Stack(
                nats_url=nats.url,
                database_url=postgres.url,
                log_dir=data_dir / "logs",
                admin_tokens=f"dev:{credentials['admin_token']}",
                form_key=credentials["form_key"],
                ports=ports,
            )
            _say("Starting the services ...")
            stack.start()
            data = demo.ensure_demo(
                data_dir / "demo.json",
                stack.url("tenant"),
                stack.url("personnel"),
                credentials["admin_token"],
            )
        except (EmbeddedServerError, ServiceStartError, httpx.HTTPError) as exc:
            _say(f"linkdesk dev: start failed: {exc}", error=True)
            _say(f"Logs are in {data_dir}/.", error=True)
            return 1

        link = links.build_link(
            stack.url("gateway"), data.secret, data.personnel_number
        )
        _print_summary(
            stack, nats, postgres, credentials["admin_token"], link, data.tenant_id
        )
        return _watch(stack, stop, args.exit_after_start)
    finally:
        _say("Stopping ...")
        try:
            if stack is not None:
                stack.stop()
        finally:
            try:
                postgres.stop()
            finally:
                nats.stop()
        _say("Stopped.")


def _say(text: str, *, error: bool = False) -> None:
    """Print a line to stdout, or stderr with `error`. A terminal or pipe that
    has gone away (BrokenPipeError, EIO) must not keep the servers and
    services from being stopped, so its error is ignored."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr if error else sys.stdout, flush=True)


def _watch(stack: Stack, stop: threading.Event, exit_after_start: bool) -> int:
    """Wait for Ctrl-C or SIGTERM; return 1 as soon as a service dies."""
    while not stop.is_set() and not exit_after_start:
        stop.wait(1.0)
        died = [s.name for s in stack.services.values() if not s.running]
        if died:
            _say(
                f"Service stopped unexpectedly: {', '.join(died)}; "
                f"see {stack.log_dir}/. Stopping everything.",
                error=True,
            )
            return 1
    return 0
