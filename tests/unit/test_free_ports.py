"""Ports for servers started by the tests, the benchmark and `linkdesk dev`."""

from __future__ import annotations

import socket
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


def test_picked_ports_lie_below_the_range_for_connections() -> None:
    """No outgoing connection can take such a port before its server binds."""
    text = embedded.EPHEMERAL_RANGE_FILE
    if not text.exists():
        pytest.skip("this kernel does not publish its ephemeral port range")
    ephemeral_low = int(text.read_text().split()[0])
    if ephemeral_low <= embedded.PICKED_PORTS_LOW + 1000:
        pytest.skip("the ephemeral range leaves no ports below it")
    ports = [free_port() for _ in range(50)]
    assert all(embedded.PICKED_PORTS_LOW <= port < ephemeral_low for port in ports)


def test_no_port_is_handed_out_twice() -> None:
    """Separate calls do not collide, even before any server binds the ports."""
    singles = [free_port() for _ in range(200)]
    base = free_port_range(4)
    handed_out = [*singles, *range(base, base + 4)]
    assert len(set(handed_out)) == len(handed_out)
    assert not any(port_in_use(port) for port in handed_out)


def test_port_range_skips_a_port_in_use(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With 64 ports to pick from, no range of 100 picks holds the taken one."""
    taken = listener.getsockname()[1]
    fake_range = tmp_path / "ip_local_port_range"
    fake_range.write_text(f"{taken + 32}\t{taken + 2000}\n")
    monkeypatch.setattr(embedded, "PICKED_PORTS_LOW", taken - 32)
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE_FILE", fake_range)
    for _ in range(100):
        monkeypatch.setattr(embedded, "_picked", set())
        base = free_port_range(4)
        assert taken not in range(base, base + 4)
