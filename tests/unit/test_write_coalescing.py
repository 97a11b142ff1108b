"""Tests for `shared.write_coalescing` over a transport that records its calls."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from shared.write_coalescing import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what it is asked to do."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append("write")
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4711)}.get(name, default)


async def over_socket() -> tuple[CoalescingTransport, socket.socket]:
    """Return a CoalescingTransport over one end of a socket pair, and the
    other end, non-blocking."""
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair()
    right.setblocking(False)
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=left)
    return CoalescingTransport(transport, loop), right


def wrapped() -> tuple[RecordingTransport, CoalescingTransport]:
    inner = RecordingTransport()
    return inner, CoalescingTransport(inner, asyncio.get_running_loop())


async def _next_step() -> None:
    # A callback scheduled with call_soon before this runs before it resumes.
    await asyncio.sleep(0)


async def test_one_step_one_write() -> None:
    inner, outer = wrapped()
    outer.write(b"HTTP/1.1 200 OK\r\n\r\n")
    outer.write(bytearray(b"body"))
    outer.writelines([b"-", memoryview(b"end")])
    assert inner.writes == []
    await _next_step()
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody-end"]


async def test_later_steps_write_separately() -> None:
    inner, outer = wrapped()
    outer.write(b"first")
    await _next_step()
    outer.write(b"second")
    await _next_step()
    assert inner.writes == [b"first", b"second"]


async def test_empty_write_schedules_nothing() -> None:
    inner, outer = wrapped()
    outer.write(b"")
    await _next_step()
    assert inner.calls == []


async def test_close_sends_pending_first() -> None:
    inner, outer = wrapped()
    outer.write(b"400 page")
    outer.close()
    assert inner.calls == ["write", "close"]
    assert inner.writes == [b"400 page"]
    await _next_step()
    assert inner.calls == ["write", "close"]


async def test_abort_drops_pending() -> None:
    inner, outer = wrapped()
    outer.write(b"never sent")
    outer.abort()
    await _next_step()
    assert inner.calls == ["abort"]


async def test_closed_connection_drops_writes() -> None:
    inner, outer = wrapped()
    outer.write(b"late")
    inner.closing = True
    await _next_step()
    assert inner.writes == []


async def test_buffer_size_counts_pending() -> None:
    _, outer = wrapped()
    outer.write(b"12345")
    assert outer.get_write_buffer_size() == 7 + 5
    assert outer.get_extra_info("peername") == ("127.0.0.1", 4711)
    assert outer.get_extra_info("socket", "none") == "none"
    assert not outer.is_closing()


async def test_socket_bytes_arrive_in_order() -> None:
    loop = asyncio.get_running_loop()
    outer, right = await over_socket()
    try:
        expected = b""
        for step in range(20):
            for part in range(step % 4 + 1):
                chunk = f"{step}.{part};".encode()
                outer.write(chunk)
                expected += chunk
            await _next_step()
        outer.close()
        received = b""
        async with asyncio.timeout(5):
            while chunk := await loop.sock_recv(right, 65536):
                received += chunk
        assert received == expected
    finally:
        right.close()


@pytest.mark.parametrize("size", [1, 64 * 1024, 4 * 1024 * 1024])
async def test_large_writes_arrive_whole(size: int) -> None:
    loop = asyncio.get_running_loop()
    outer, right = await over_socket()
    try:
        outer.write(b"h" * 100)
        outer.write(b"b" * size)
        await _next_step()
        outer.close()
        received = bytearray()
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(right, 1 << 20):
                received += chunk
        assert received == b"h" * 100 + b"b" * size
    finally:
        right.close()
