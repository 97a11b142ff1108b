"""A service that cannot start says why, in the error that `linkdesk dev` shows."""

from __future__ import annotations

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


def test_start_error_names_a_taken_port(
    held_port: int, own_nats: EmbeddedNats, own_database: str, tmp_path: Path
) -> None:
    service = tenant_service(held_port, own_nats.url, own_database, tmp_path / "t.log")
    service.start()
    try:
        with pytest.raises(ServiceStartError) as raised:
            service.wait_ready(timeout=60)
    finally:
        service.stop()
    message = str(raised.value)
    assert message.startswith("tenant exited during start: ")
    assert f"('{LOOPBACK}', {held_port}): address already in use" in message
    assert str(tmp_path / "t.log") in message


def test_start_error_names_a_refusing_database(
    own_nats: EmbeddedNats, tmp_path: Path
) -> None:
    """Of the traceback, the error shows the exception's line."""
    log = tmp_path / "t.log"
    # An earlier start's error in the same log is not this start's reason.
    log.write_text('{"level":"error","message":"an earlier failure"}\n')
    nowhere = f"postgresql://linkdesk@{LOOPBACK}:{free_port()}/linkdesk"
    service = tenant_service(free_port(), own_nats.url, nowhere, log)
    service.start()
    try:
        with pytest.raises(ServiceStartError) as raised:
            service.wait_ready(timeout=60)
    finally:
        service.stop()
    message = str(raised.value)
    assert "an earlier failure" not in message
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in message
