"""Ports for servers started by the tests, the benchmark and `linkdesk dev`."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import embedded
from shared.embedded import LOOPBACK, free_port, free_port_range, port_in_use


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A server on a port from the picker's own range."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, free_port()))
        sock.listen()
        yield sock


def test_port_in_use_with_a_listener(listener: socket.socket) -> None:
    assert port_in_use(listener.getsockname()[1])


def test_port_in_use_as_a_connection_end(listener: socket.socket) -> None:
    """A connect finds no server there, yet a server could not bind it."""
    with socket.create_connection(listener.getsockname()) as client:
        local_port = client.getsockname()[1]
        assert port_in_use(local_port)


def test_port_free_after_its_listener_closed() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen()
        assert port_in_use(port)
    assert not port_in_use(port)


def test_picked_ports_lie_outside_the_range_for_connections() -> None:
    """No outgoing connection can take such a port before its server binds."""
    ephemeral = embedded._ephemeral_range()
    if ephemeral is None:
        pytest.skip("this system does not tell its ephemeral port range")
    low, high = ephemeral
    ports = [free_port() for _ in range(50)]
    assert not [port for port in ports if low <= port <= high]
    assert all(port >= embedded.PICKED_PORTS_LOW for port in ports)


def hand_out_ports() -> list[int]:
    """Return 200 single ports and a range of 4, as handed out in turn."""
    singles = [free_port() for _ in range(200)]
    base = free_port_range(4)
    return [*singles, *range(base, base + 4)]


def test_no_port_is_handed_out_twice() -> None:
    """Separate calls do not collide, even before any server binds the ports."""
    handed_out = hand_out_ports()
    assert len(set(handed_out)) == len(handed_out)
    assert not any(port_in_use(port) for port in handed_out)


def fake_range(
    monkeypatch: pytest.MonkeyPatch, folder: Path, low: int, high: int
) -> None:
    text = folder / "ip_local_port_range"
    text.write_text(f"{low}\t{high}\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE_FILE", text)
    monkeypatch.setattr(embedded, "_picked", set())


def test_port_range_skips_a_port_in_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With 64 ports to pick from, no range of 100 picks contains the busy one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        busy_port = next(
            port for port in range(20_000, 30_000) if not port_in_use(port)
        )
        listener.bind((LOOPBACK, busy_port))
        listener.listen()
        # Left of the range for connections, only busy_port - 32 .. busy_port + 31.
        monkeypatch.setattr(embedded, "PICKED_PORTS_LOW", busy_port - 32)
        fake_range(monkeypatch, tmp_path, busy_port + 32, 65535)
        for _ in range(100):
            monkeypatch.setattr(embedded, "_picked", set())
            base = free_port_range(4)
            assert base >= busy_port - 32
            assert base + 3 < busy_port + 32
            assert busy_port not in range(base, base + 4)


def test_ports_above_the_range_for_connections(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A range that starts low leaves the ports above it."""
    fake_range(monkeypatch, tmp_path, 1024, 59999)
    ports = [free_port() for _ in range(50)]
    assert all(port >= 60000 for port in ports)
    assert len(set(ports)) == len(ports)


def test_kernel_chosen_ports_without_room(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A range over nearly every port leaves the choice to the kernel, and
    still no port is handed out twice."""
    fake_range(monkeypatch, tmp_path, 1024, 65535)
    handed_out = hand_out_ports()
    assert len(set(handed_out)) == len(handed_out)
    assert not any(port_in_use(port) for port in handed_out)


def test_unreadable_range_on_linux_is_the_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE_FILE", tmp_path / "missing")
    monkeypatch.setattr(sys, "platform", "linux")
    assert embedded._ephemeral_range() == embedded.LINUX_EPHEMERAL_DEFAULT
    monkeypatch.setattr(sys, "platform", "darwin")
    assert embedded._ephemeral_range() is None
