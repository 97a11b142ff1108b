"""Reading a posted body within the gateway's size limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from services.gateway.request_body import read_body


def read(
    messages: list[dict[str, Any]], headers: dict[str, str], limit: int
) -> tuple[bytes, int]:
    """Return the body and how many messages were received."""
    pending = list(messages)

    async def receive() -> Any:
        return pending.pop(0)

    body = asyncio.run(read_body(receive, headers, limit))
    return body, len(messages) - len(pending)


def chunk(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_chunks_joined_in_order() -> None:
    body, received = read([chunk(b"a=1", True), chunk(b"&b=2")], {}, limit=7)
    assert body == b"a=1&b=2"
    assert received == 2


def test_body_at_limit_accepted() -> None:
    assert read([chunk(b"x" * 10)], {"content-length": "10"}, limit=10)[0] == b"x" * 10


def test_announced_length_over_limit_reads_nothing() -> None:
    pending = [chunk(b"x" * 11)]

    async def receive() -> Any:
        return pending.pop(0)

    with pytest.raises(RequestEntityTooLarge):
        asyncio.run(read_body(receive, {"content-length": "11"}, 10))
    assert len(pending) == 1


def test_streamed_body_over_limit_rejected() -> None:
    # Without Content-Length (chunked transfer), the bytes received count.
    with pytest.raises(RequestEntityTooLarge):
        read([chunk(b"x" * 6, True), chunk(b"x" * 6)], {}, limit=10)


def test_understated_length_over_limit_rejected() -> None:
    with pytest.raises(RequestEntityTooLarge):
        read([chunk(b"x" * 11)], {"content-length": "3"}, limit=10)


def test_disconnect_before_end_raises() -> None:
    with pytest.raises(InternalServerException):
        read([chunk(b"a", True), {"type": "http.disconnect"}], {}, limit=10)


def test_empty_body_read() -> None:
    assert read([chunk(b"")], {}, limit=10)[0] == b""


@pytest.mark.parametrize("announced", ["abc", "\xb2", "-1", "+5", "1.0", ""])
def test_invalid_content_length_rejected(announced: str) -> None:
    with pytest.raises(ClientException):
        read([chunk(b"x")], {"content-length": announced}, limit=10)


def test_long_content_length_too_large() -> None:
    with pytest.raises(RequestEntityTooLarge):
        read([chunk(b"x")], {"content-length": "9" * 5000}, limit=10)


def test_zero_padded_content_length_accepted() -> None:
    assert (
        read([chunk(b"x")], {"content-length": "0" * 5000 + "1"}, limit=10)[0] == b"x"
    )


def test_other_messages_skipped() -> None:
    body, received = read([{"type": "http.other"}, chunk(b"a=1")], {}, limit=10)
    assert body == b"a=1"
    assert received == 2
