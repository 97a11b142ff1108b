"""A service that cannot start reports why, in the error that `linkdesk dev` shows."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from linkdesk.processes import ServiceProcess, ServiceStartError
from shared.embedded import LOOPBACK, EmbeddedNats, free_port


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port held by the local end of an outgoing connection, as happens when
    a port is chosen free and a client takes it before the server binds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind((LOOPBACK, free_port()))
        server.listen()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            port = free_port()
            client.bind((LOOPBACK, port))
            client.connect(server.getsockname())
            yield port


def tenant_service(
    port: int, nats_url: str, database_url: str, log: Path
) -> ServiceProcess:
    return ServiceProcess(
        "tenant",
        port,
        {"NATS_URL": nats_url, "DATABASE_URL": database_url, "LOG_FORMAT": "json"},
        log,
    )


def start_error(service: ServiceProcess, timeout: float = 60) -> tuple[str, int | None]:
    """Start `service`, which must fail to get ready; return the launcher's
    error and the exit code of the stop that follows."""
    service.start()
    try:
        with pytest.raises(ServiceStartError) as raised:
            service.wait_ready(timeout=timeout)
    finally:
        code = service.stop()
    return str(raised.value), code


def test_start_error_names_a_taken_port(
    held_port: int, own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    service = tenant_service(held_port, own_nats.url, own_database, tmp_path / "t.log")
    message, _ = start_error(service)
    assert message.startswith("tenant exited during start: ")
    assert f"('{LOOPBACK}', {held_port}): address already in use" in message
    assert str(tmp_path / "t.log") in message


def test_start_error_names_a_refusing_database(
    own_nats: EmbeddedNats, tmp_path: Path
) -> None:
    """The error names the server, without the URL's password."""
    log = tmp_path / "t.log"
    # An earlier start's error in the same log is not this start's reason.
    log.write_text('{"level":"error","message":"an earlier failure"}\n')
    port = free_port()
    nowhere = f"postgresql://linkdesk:TopSecret2@{LOOPBACK}:{port}/linkdesk"
    message, _ = start_error(tenant_service(free_port(), own_nats.url, nowhere, log))
    assert "an earlier failure" not in message
    assert f"database connection failed at {LOOPBACK}:{port} (" in message
    assert "Connection refused" in message
    assert "TopSecret2" not in message
    assert "TopSecret2" not in log.read_text()


def test_service_logs_servers_without_passwords(
    own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    """Neither server requires a password here, so both connections succeed
    and log their server; the passwords in the URLs stay out of the log."""
    nats_url = own_nats.url.replace("nats://", "nats://linkdesk:TopSecret1@")
    database_url = own_database.replace("://postgres@", "://postgres:TopSecret2@", 1)
    assert "TopSecret2" in database_url
    log = tmp_path / "t.log"
    service = tenant_service(free_port(), nats_url, database_url, log)
    service.start()
    try:
        service.wait_ready(timeout=60)
    finally:
        service.stop()
    text = log.read_text()
    assert '"event":"nats_connected"' in text
    assert f'"server":"{LOOPBACK}:{own_nats.port}"' in text
    assert "TopSecret" not in text


def test_start_timeout_names_the_last_problem(
    own_database: str, tmp_path: Path
) -> None:
    """A service that keeps trying to reach NATS never exits by itself, so
    the launcher's timeout quotes what it last ran into."""
    nowhere = f"nats://linkdesk:TopSecret1@{LOOPBACK}:{free_port()}"
    log = tmp_path / "t.log"
    service = tenant_service(free_port(), nowhere, own_database, log)
    message, code = start_error(service, timeout=8)
    assert message.startswith("tenant not ready after 8 s, last: "), message
    assert "TopSecret1" not in message
    # Ended by the SIGTERM itself, not by the SIGKILL that follows it after
    # 15 s: a start that waits still stops when asked.
    assert code == -signal.SIGTERM
    assert '"message":"service stopped before it was ready"' in log.read_text()
