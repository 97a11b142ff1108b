"""uvicorn's httptools protocol with the request-head limits of its h11 protocol.

Stock uvicorn 0.55 with httptools 0.9 differs from its h11 protocol in two
ways that this subclass removes:

- `httptools.parse_url` rejects a request target over 65,535 bytes, and
  uvicorn then sends its own plain 400. The gateway must instead respond to
  a link with a 100 KB query with its neutral 404 page, so longer targets
  that start with "/" are split here the way uvicorn's h11 protocol splits
  every target. Longer targets of other forms still get the 400.
- uvicorn sets no limit on the size of the request line and headers for
  httptools, and llhttp has none (a 2 MB header reaches the app). Here a
  head over `Config.h11_max_incomplete_event_size` bytes gets the 400 that
  h11 sends for it.

It also sends each response through a `CoalescingTransport`, so that its
head and body leave in one write.

NOTE: llhttp also rejects methods that it does not know, such as BREW, and
uvicorn then sends its plain 400, while h11 passes any method to the app.
This subclass keeps that difference.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from shared.write_coalescing import CoalescingTransport

logger = logging.getLogger(__name__)

PARSE_URL_MAX_BYTES = 65_535
"""Maximum length in bytes of a request target that `httptools.parse_url`
accepts (httptools 0.9, because http_parser stores URL offsets as 16-bit
integers)."""

H11_DEFAULT_MAX_HEAD_BYTES = 16 * 1024
"""h11 0.16's default maximum incomplete event size, which uvicorn uses when
`h11_max_incomplete_event_size` is None."""

INVALID_REQUEST_MESSAGE = "Invalid HTTP request received."
"""The body of uvicorn's own 400, so that both limits send the same response."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """The httptools protocol with h11's head limit and no URL length limit.

    It relies on three details of uvicorn 0.55's class, which the tests in
    tests/unit/test_httptools_protocol.py check: `url` collects the request
    target, `scope` is the dict that the request's ASGI task receives, and
    that task starts only after `on_headers_complete` returns.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limit = config.h11_max_incomplete_event_size
        self.max_head_bytes = H11_DEFAULT_MAX_HEAD_BYTES if limit is None else limit
        self.head_bytes = 0
        self.reading_head = True

    def connection_made(  # type: ignore[override]
        self, transport: asyncio.Transport
    ) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))

    def data_received(self, data: bytes) -> None:
        # As h11 does, this bounds the bytes read while the head is
        # unfinished. A chunk counts when the head is unfinished at its start,
        # but the request is rejected only if the head is still unfinished
        # after the chunk was parsed, so body bytes never cause a rejection.
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        if (
            self.reading_head
            and self.head_bytes > self.max_head_bytes
            and not self.transport.is_closing()
        ):
            logger.warning(
                "request head over %d bytes, rejected with 400",
                self.max_head_bytes,
                extra={
                    "event": "request_head_too_large",
                    "bytes": self.head_bytes,
                    "max_bytes": self.max_head_bytes,
                },
            )
            self.send_400_response(INVALID_REQUEST_MESSAGE)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        target = self.url
        if len(target) <= PARSE_URL_MAX_BYTES or not target.startswith(b"/"):
            super().on_headers_complete()
            return
        # uvicorn builds the scope from a short stand-in target, and the
        # real path and query replace it before the ASGI task runs.
        self.url = b"/"
        try:
            super().on_headers_complete()
        finally:
            self.url = target
        raw_path, _, query_string = target.partition(b"?")
        self.scope["path"] = self.root_path + unquote(raw_path.decode("ascii"))
        self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        self.scope["query_string"] = query_string

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
