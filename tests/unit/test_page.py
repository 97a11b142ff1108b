"""A page sends the same status, headers and body as a Litestar response."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from litestar import Litestar, Request

from services.gateway.page import TEXT, Page
from services.gateway.pages import PUBLIC_HEADERS, Pages, frame_headers

Messages = list[dict[str, Any]]


def sent(respond: Callable[[Any, Any, Any], Coroutine[Any, Any, None]]) -> Messages:
    """Return the ASGI messages that `respond(scope, receive, send)` sends."""
    app = Litestar()
    scope = {"type": "http", "method": "GET", "headers": [], "app": app}
    messages: Messages = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("a page reads nothing")

    async def send(message: Any) -> None:
        messages.append(message)

    asyncio.run(respond(scope, receive, send))
    return messages


def litestar_sent(page: Page) -> Messages:
    """Return the messages of the Litestar response that `to_response` gives."""

    async def respond(scope: Any, receive: Any, send: Any) -> None:
        request: Request[Any, Any, Any] = Request(scope)
        response = page.to_response().to_asgi_response(scope["app"], request)
        await response(scope, receive, send)

    return sent(respond)


def test_page_sends_head_then_body() -> None:
    page = Page(b"<p>x</p>", 404, {"Cache-Control": "no-store", "X-Test": "1"})
    start, body = sent(page)
    assert start["type"] == "http.response.start"
    assert start["status"] == 404
    assert start["headers"] == [
        (b"cache-control", b"no-store"),
        (b"x-test", b"1"),
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", b"8"),
    ]
    assert body == {
        "type": "http.response.body",
        "body": b"<p>x</p>",
        "more_body": False,
    }


def test_page_matches_its_litestar_response() -> None:
    for page in (
        Page("<p>Jörg</p>".encode(), 200, {"Referrer-Policy": "no-referrer"}),
        Page(b"", 303, {"Location": "/public/tickets/T-1"}, media_type=TEXT),
    ):
        ours, litestars = sent(page), litestar_sent(page)
        assert ours[0]["status"] == litestars[0]["status"]
        assert sorted(ours[0]["headers"]) == sorted(litestars[0]["headers"])
        assert ours[1]["body"] == litestars[1]["body"]


def test_shared_page_headers_match_fresh_encoding() -> None:
    pages = Pages()
    public = {
        name: value
        for name, value in PUBLIC_HEADERS.items()
        if name not in ("Content-Security-Policy", "X-Frame-Options")
    }
    for ancestors in ((), ("https://intranet.example",)):
        page = pages.confirmation("de", "T-1", ancestors)
        expected = Page(page.content, 200, {**public, **frame_headers(ancestors)})
        assert page.encoded_headers() == expected.encoded_headers()
    framed = dict(
        pages.confirmation("de", "T-1", ("https://a.example",)).encoded_headers()
    )
    assert b"frame-ancestors https://a.example" in framed[b"content-security-policy"]
    assert b"x-frame-options" not in framed
