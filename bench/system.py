"""Start linkdesk on the embedded servers with free ports, for the benchmark,
or use services that already run on this machine."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from bench import commit_delay
from linkdesk import demo, links
from linkdesk.processes import Stack
from shared.embedded import LOOPBACK, EmbeddedNats, EmbeddedPostgres, free_port

UNLIMITED = "1000000000"
"""Submission limits high enough never to block, so the limit checks still
run on every post (a limit of 0 would switch them off)."""

_FORM_TOKEN = re.compile(r'name="form_token" value="([^"]+)"')

SERVICE_URL_VARIABLES = {
    "gateway": "LINKDESK_GATEWAY_URL",
    "tenant": "LINKDESK_TENANT_URL",
    "personnel": "LINKDESK_PERSONNEL_URL",
    "ticket": "LINKDESK_TICKET_URL",
}
"""The variables that `linkdesk dev` prints for the admin commands."""

RUNNING_TENANT = "linkdesk benchmark"
"""Name of the tenant that a benchmark of running services adds."""


class RunningServicesError(ValueError):
    """The environment does not describe running services the benchmark may use."""


@dataclass(frozen=True)
class RunningServices:
    """Services that run already, as a deployment or `linkdesk dev` runs them."""

    urls: dict[str, str]
    nats_url: str
    database_url: str
    admin_token: str = field(repr=False)
    form_key: str = field(repr=False)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RunningServices:
        """Read the services' addresses and the two secrets from `environ`.

        Every address must be on this machine's loopback, because the
        benchmark puts its full load on them.
        """
        required = [
            *SERVICE_URL_VARIABLES.values(),
            "NATS_URL",
            "DATABASE_URL",
            "LINKDESK_ADMIN_TOKEN",
            "GATEWAY_FORM_KEY",
        ]
        missing = [name for name in required if not environ.get(name)]
        if missing:
            msg = (
                f"set {', '.join(missing)} to benchmark running services; "
                "`linkdesk dev` prints the addresses and the admin token, and "
                "GATEWAY_FORM_KEY is the gateway's own setting"
            )
            raise RunningServicesError(msg)
        urls = {
            name: environ[var].rstrip("/")
            for name, var in SERVICE_URL_VARIABLES.items()
        }
        running = cls(
            urls=urls,
            nats_url=environ["NATS_URL"],
            database_url=environ["DATABASE_URL"],
            admin_token=environ["LINKDESK_ADMIN_TOKEN"],
            form_key=environ["GATEWAY_FORM_KEY"],
        )
        addresses = [
            *((SERVICE_URL_VARIABLES[name], url) for name, url in urls.items()),
            # nats-py takes a comma-separated list of servers.
            *(("NATS_URL", url) for url in running.nats_url.split(",")),
            ("DATABASE_URL", running.database_url),
        ]
        for variable, url in addresses:
            if not is_loopback_url(url):
                # Only the hosts: a database URL may carry a password.
                hosts = url_hosts(url)
                named = ", ".join(host for host in hosts or [] if host)
                msg = (
                    f"{variable} points at {named or 'no readable host'}, not "
                    "only at this machine's loopback (127.0.0.1, ::1 or "
                    "localhost); the benchmark loads only services on this "
                    "machine"
                )
                raise RunningServicesError(msg)
        return running


def url_hosts(url: str) -> list[str] | None:
    """Return every host that a client of `url` may connect to, or None when
    the URL cannot be read.

    A libpq URL may list several hosts, separated by commas, and more in its
    `host` or `hostaddr` parameter; a client tries them in turn.
    """
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
    except ValueError:
        return None
    if not parts.scheme:
        return None
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(",") if parts.netloc else []:
        if item.startswith("["):
            host, closed, _ = item[1:].partition("]")
            if not closed:
                return None
        else:
            host = item.partition(":")[0]
        hosts.append(host)
    for name in ("host", "hostaddr"):
        for value in query.get(name, []):
            hosts += value.split(",")
    if not hosts and parts.scheme.startswith("postgres"):
        # libpq's default: the local Unix socket.
        hosts.append("")
    return hosts or None


def is_loopback_host(host: str) -> bool:
    """Return whether `host` is on this machine: a loopback address, the
    name localhost, a Unix socket folder, or empty (libpq's local default)."""
    if host in {"", "localhost"} or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """Return whether every host that `url` names is on this machine."""
    hosts = url_hosts(url)
    return bool(hosts) and all(is_loopback_host(host) for host in hosts or [])


@dataclass
class System:
    data_dir: Path
    nats: EmbeddedNats = field(init=False)
    postgres: EmbeddedPostgres = field(init=False)
    stack: Stack = field(init=False)
    form_key: bytes = field(init=False)
    link: str = ""
    admin_token: str = ""
    demo_data: demo.DemoData = field(init=False)
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    running: RunningServices | None = None
    """Services to use instead of starting them; None starts everything."""

    @property
    def nats_url(self) -> str:
        return self.running.nats_url if self.running else self.nats.url

    @property
    def database_url(self) -> str:
        return self.running.database_url if self.running else self.postgres.url

    def url(self, service: str) -> str:
        """Return the base URL of `service`, such as "gateway"."""
        return self.running.urls[service] if self.running else self.stack.url(service)

    def start(self) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        if self.running is not None:
            self._use_running(self.running)
            return
        self.nats = EmbeddedNats(self.data_dir / "nats")
        self.postgres = EmbeddedPostgres(
            self.data_dir / "postgres", settings=commit_delay.SERVER_SETTINGS
        )
        self.nats.start()
        self.postgres.start()
        self.admin_token = secrets.token_urlsafe(32)
        key_text = secrets.token_urlsafe(32)
        self.form_key = _key_bytes(key_text)
        self.stack = Stack(
            nats_url=self.nats.url,
            database_url=self.postgres.url,
            log_dir=self.data_dir / "logs",
            admin_tokens=f"bench:{self.admin_token}",
            form_key=key_text,
            extra_env={
                "GATEWAY_SUBMISSIONS_PER_PERSON": UNLIMITED,
                "GATEWAY_SUBMISSIONS_PER_TENANT": UNLIMITED,
            },
        )
        self.stack.start()
        self._add_tenant(demo.DEMO_TENANT)

    def _use_running(self, running: RunningServices) -> None:
        self.admin_token = running.admin_token
        self.form_key = _key_bytes(running.form_key)
        self._add_tenant(RUNNING_TENANT)

    def _add_tenant(self, name: str) -> None:
        self.demo_data = demo.ensure_demo(
            self.data_dir / "demo.json",
            self.url("tenant"),
            self.url("personnel"),
            self.admin_token,
            tenant_name=name,
        )
        self.link = links.build_link(
            self.url("gateway"),
            self.demo_data.secret,
            self.demo_data.personnel_number,
        )

    def admin_client(self, service: str, timeout: float = 30) -> httpx.Client:
        """Return a client of `service`'s admin API with the benchmark's token."""
        return httpx.Client(
            base_url=self.url(service),
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=timeout,
        )

    def fetch_form_token(self, link: str = "") -> str:
        """Open `link` (default: the benchmark's link) once and return the
        form token of the rendered form."""
        url = link or self.link
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        found = _FORM_TOKEN.search(response.text)
        if found is None:
            # Without the query, which contains the tenant's link secret.
            page = url.partition("?")[0]
            msg = f"no form_token in the form page of {page}"
            raise RuntimeError(msg)
        return found.group(1)

    def pids(self) -> dict[str, int]:
        """Return the pid of every service process and of both servers.

        PostgreSQL's is the postmaster's; its backends are separate processes
        and not counted. Of running services, none is known.
        """
        if self.running is not None:
            return {}
        found = {
            name: service.pid
            for name, service in self.stack.services.items()
            if service.pid is not None
        }
        if self.nats.pid is not None:
            found["nats-server"] = self.nats.pid
        if self.postgres.pid is not None:
            found["postgres"] = self.postgres.pid
        return found

    def start_helper(self, argv: list[str], port: int | None = None) -> None:
        """Start a baseline process and wait until `port` accepts connections."""
        log = (self.data_dir / "logs" / f"helper-{len(self.helpers)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "NATS_URL": self.nats_url,
                "DATABASE_URL": self.database_url,
            },
        )
        self.helpers.append(process)
        deadline = time.monotonic() + 20
        while port is not None and time.monotonic() < deadline:
            if process.poll() is not None:
                msg = f"baseline {argv} exited with {process.returncode}"
                raise RuntimeError(msg)
            try:
                httpx.get(f"http://{LOOPBACK}:{port}/", timeout=0.5)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        if port is not None:
            msg = f"baseline {argv} not listening on {port} after 20 s"
            raise RuntimeError(msg)
        time.sleep(1.0)
        if process.poll() is not None:
            msg = f"baseline {argv} exited with {process.returncode}"
            raise RuntimeError(msg)

    def stop_helpers(self) -> None:
        for process in self.helpers:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self.helpers.clear()

    def stop(self) -> None:
        self.stop_helpers()
        if hasattr(self, "stack"):
            self.stack.stop()
        if hasattr(self, "postgres"):
            self.postgres.stop()
        if hasattr(self, "nats"):
            self.nats.stop()


def _key_bytes(text: str) -> bytes:
    """Decode a `GATEWAY_FORM_KEY` value, URL-safe base64 without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def rss_mb(pid: int) -> float | None:
    """Return VmRSS of `pid` in MB (MiB), or None when it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


__all__ = ["System", "free_port", "rss_mb"]
