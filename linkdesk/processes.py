"""Start the four services as separate processes and stop them cleanly.

`linkdesk dev` and the end-to-end tests both run the services this way, with
the same entry points (`python -m services.<name>`) that a container uses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.embedded import LOOPBACK, free_port

SERVICES = ("tenant", "personnel", "ticket", "gateway")
"""Start order: the gateway last, so that it finds the others and the stream."""

DEFAULT_PORTS = {"gateway": 8080, "tenant": 8081, "personnel": 8082, "ticket": 8083}


MAX_LOG_READ = 1 << 20
"""How much of a log `first_error` reads: a failed start logs far less."""

_ERROR_LEVELS = frozenset({"error", "critical"})
_WARNING_LEVELS = frozenset({"warning", *_ERROR_LEVELS})


class ServiceStartError(RuntimeError):
    """A service exited or did not report ready in time."""


def _last_line(text: object) -> str:
    lines = [line.strip(" |") for line in str(text).splitlines()]
    # Exception groups close with a rule of "+" and "-".
    lines = [line for line in lines if line.strip("+-")]
    return lines[-1] if lines else ""


def _problems(log_path: Path, start: int, levels: frozenset[str]) -> list[str]:
    """Return the log lines at `levels` from `start` on, each summed up in a
    line: of a traceback, only its last line, which names the exception."""
    try:
        with log_path.open("rb") as log:
            log.seek(start)
            lines = log.read(MAX_LOG_READ).splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("level") not in levels:
            continue
        message = _last_line(record.get("message", ""))
        error = _last_line(record.get("error", ""))
        if message and error:
            found.append(f"{message} ({error})")
        elif message or error:
            found.append(message or error)
    return found


def first_error(log_path: Path, start: int = 0) -> str:
    """Return the first error that a service logged from `start` on, or ""."""
    found = _problems(log_path, start, _ERROR_LEVELS)
    return found[0] if found else ""


def last_warning(log_path: Path, start: int = 0) -> str:
    """Return the last warning or error logged from `start` on, or "": what
    a service that keeps retrying last ran into."""
    found = _problems(log_path, start, _WARNING_LEVELS)
    return found[-1] if found else ""


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_start: int = field(default=0, repr=False)
    """Offset of this start's first line in the log, which earlier starts share."""

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **self.env,
            "HTTP_HOST": LOOPBACK,
            "HTTP_PORT": str(self.port),
        }
        with self.log_path.open("ab") as log:
            self.log_start = log.tell()
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own session: Ctrl-C reaches only the launcher, which
                # then stops the services in order.
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                error = first_error(self.log_path, self.log_start)
                reason = f": {error}" if error else ""
                msg = f"{self.name} exited during start{reason}; see {self.log_path}"
                raise ServiceStartError(msg)
            try:
                if (
                    httpx.get(f"{self.url}/health/ready", timeout=1.0).status_code
                    == 200
                ):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        problem = last_warning(self.log_path, self.log_start)
        reason = f", last: {problem}" if problem else ""
        msg = (
            f"{self.name} not ready after {timeout:.0f} s{reason}; see {self.log_path}"
        )
        raise ServiceStartError(msg)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode

    def kill(self) -> None:
        """Stop abruptly, as a crash or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@dataclass
class Stack:
    """The four services against one NATS and one PostgreSQL."""

    nats_url: str
    database_url: str
    log_dir: Path
    admin_tokens: str
    form_key: str
    ports: Mapping[str, int] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    replicas: list[ServiceProcess] = field(default_factory=list)
    """Further processes of the services, added by `add_replica`."""

    def __post_init__(self) -> None:
        env = {
            "NATS_URL": self.nats_url,
            "DATABASE_URL": self.database_url,
            "LINKDESK_ADMIN_TOKENS": self.admin_tokens,
            "GATEWAY_FORM_KEY": self.form_key,
            "LOG_FORMAT": "json",
            **self.extra_env,
        }
        for name in SERVICES:
            port = self.ports.get(name) or free_port()
            self.services[name] = ServiceProcess(
                name, port, env, self.log_dir / f"{name}.log"
            )

    def url(self, name: str) -> str:
        return self.services[name].url

    def add_replica(self, name: str, port: int = 0) -> ServiceProcess:
        """Declare one more process of service `name`, not started yet.

        The replica gets the first process's environment, its own HTTP port
        (a free one unless `port` is given) and its own log file,
        `<name>-<n>.log` for the n-th process of that service.
        """
        first = self.services[name]
        number = len(self.instances(name)) + 1
        replica = ServiceProcess(
            name,
            port or free_port(),
            first.env,
            self.log_dir / f"{name}-{number}.log",
        )
        self.replicas.append(replica)
        return replica

    def instances(self, name: str) -> list[ServiceProcess]:
        """Return every process of service `name`: the first, then its replicas."""
        return [
            self.services[name],
            *(replica for replica in self.replicas if replica.name == name),
        ]

    def start(self, *names: str, timeout: float = 30.0) -> None:
        """Start the named services (all when none are named), in order."""
        for name in names or SERVICES:
            service = self.services[name]
            if not service.running:
                service.start()
                service.wait_ready(timeout)

    def stop(self, *names: str) -> None:
        """Stop the named services (all when none are named), gateway first.

        A service's replicas stop before its first process.
        """
        for name in reversed(names or SERVICES):
            for process in reversed(self.instances(name)):
                process.stop()
