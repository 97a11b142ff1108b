"""Read a request's body in a plain ASGI handler, within the size limit."""

from __future__ import annotations

from collections.abc import Mapping

from litestar.exceptions import ClientException, InternalServerException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import Receive


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """Return the whole body, at most `limit` bytes.

    Raises `RequestEntityTooLarge`, which the app turns into its 413 page,
    as soon as the announced `Content-Length` or the bytes received exceed
    `limit`, so a large body is never held in memory. Raises
    `InternalServerException` when the client disconnects first, as
    Litestar's own `Request.body` does.
    """
    announced = headers.get("content-length")
    if announced is not None:
        if not (announced.isascii() and announced.isdigit()):
            msg = f"invalid Content-Length header {announced[:40]!r}"
            raise ClientException(msg)
        # A value with more digits than the limit exceeds it, and int()
        # raises on a few thousand digits.
        digits = announced.lstrip("0") or "0"
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise RequestEntityTooLarge
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InternalServerException("client disconnected prematurely")
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise RequestEntityTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
