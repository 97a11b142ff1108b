"""Tests for `shared.httptools_protocol` on a real uvicorn server.

The server runs in a thread on a loopback socket with the services' settings
for the protocol and the head limit. Its app echoes what it received, so each
test can compare the request that arrived with the one that was sent.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from shared.httptools_protocol import (
    INVALID_REQUEST_MESSAGE,
    PARSE_URL_MAX_BYTES,
    LimitedHttpToolsProtocol,
)
from shared.runtime import HTTP_PROTOCOL, MAX_REQUEST_HEAD_BYTES

SOCKET_TIMEOUT = 10.0
HUNDRED_KB = 100 * 1024


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Return the path, raw path, query and body length that arrived, as JSON."""
    if scope["type"] != "http":
        return
    body_length = 0
    more_body = True
    while more_body:
        message = await receive()
        body_length += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    payload = json.dumps(
        {
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query_string": scope["query_string"].decode("latin-1"),
            "body_length": body_length,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        echo_app,
        log_config=None,
        access_log=False,
        lifespan="off",
        http=HTTP_PROTOCOL,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]})
    thread.start()
    try:
        deadline = time.monotonic() + SOCKET_TIMEOUT
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(SOCKET_TIMEOUT)
        listener.close()


def request_bytes(
    target: bytes, headers: bytes = b"", body: bytes = b"", close: bool = True
) -> bytes:
    method = b"POST" if body else b"GET"
    head = method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers
    if body:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def read_until_closed(conn: socket.socket) -> bytes:
    chunks: list[bytes] = []
    # Bounded in count as well, in case the server never closes.
    for _ in range(10_000):
        try:
            chunk = conn.recv(65_536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and return all bytes until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT) as conn:
        conn.sendall(data)
        return read_until_closed(conn)


def split_responses(data: bytes) -> list[tuple[int, bytes]]:
    """Split consecutive responses with Content-Length into (status, body)."""
    responses = []
    while data:
        head, separator, rest = data.partition(b"\r\n\r\n")
        assert separator, f"incomplete response: {data[:200]!r}"
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        responses.append((int(status_line.split(" ")[1]), rest[:length]))
        data = rest[length:]
    return responses


def echoed(response: tuple[int, bytes]) -> dict[str, Any]:
    status, body = response
    assert status == 200, body[:200]
    result: dict[str, Any] = json.loads(body)
    return result


# Request targets over the 64 KiB URL limit of httptools


def test_server_uses_limited_protocol() -> None:
    assert HTTP_PROTOCOL is LimitedHttpToolsProtocol


def test_hundred_kb_query_reaches_app(server_port: int) -> None:
    query = b"k7Q2xLm9Rt4vZp1W&" + b"0" * HUNDRED_KB
    data = exchange(server_port, request_bytes(b"/public/TicketAll?" + query))
    received = echoed(split_responses(data)[0])
    assert received["path"] == "/public/TicketAll"
    assert received["raw_path"] == "/public/TicketAll"
    assert received["query_string"] == query.decode()


def test_hundred_kb_path_is_unquoted(server_port: int) -> None:
    raw_path = b"/a%20b/" + b"c" * HUNDRED_KB
    data = exchange(server_port, request_bytes(raw_path + b"?x=%41"))
    received = echoed(split_responses(data)[0])
    assert received["path"] == "/a b/" + "c" * HUNDRED_KB
    assert received["raw_path"] == raw_path.decode()
    assert received["query_string"] == "x=%41"


def test_target_at_url_limit_uses_httptools(server_port: int) -> None:
    prefix = b"/p?"
    query = b"q" * (PARSE_URL_MAX_BYTES - len(prefix))
    data = exchange(server_port, request_bytes(prefix + query))
    received = echoed(split_responses(data)[0])
    assert received["path"] == "/p"
    assert received["query_string"] == query.decode()


def test_short_target_is_unquoted(server_port: int) -> None:
    data = exchange(server_port, request_bytes(b"/a%20b?x=1&y"))
    received = echoed(split_responses(data)[0])
    assert received["path"] == "/a b"
    assert received["raw_path"] == "/a%20b"
    assert received["query_string"] == "x=1&y"


def test_pipelined_long_targets_keep_their_queries(server_port: int) -> None:
    first = b"1" * HUNDRED_KB
    second = b"2" * HUNDRED_KB
    data = exchange(
        server_port,
        request_bytes(b"/one?" + first, close=False) + request_bytes(b"/two?" + second),
    )
    responses = split_responses(data)
    assert len(responses) == 2
    assert echoed(responses[0])["path"] == "/one"
    assert echoed(responses[0])["query_string"] == first.decode()
    assert echoed(responses[1])["path"] == "/two"
    assert echoed(responses[1])["query_string"] == second.decode()


def test_long_absolute_form_target_rejected(server_port: int) -> None:
    target = b"http://127.0.0.1/p?" + b"0" * HUNDRED_KB
    status, body = split_responses(exchange(server_port, request_bytes(target)))[0]
    assert status == 400
    assert body == INVALID_REQUEST_MESSAGE.encode()


# The limit on the request head


def test_head_below_limit_reaches_app(server_port: int) -> None:
    header = b"X-Large: " + b"a" * (MAX_REQUEST_HEAD_BYTES - 1024) + b"\r\n"
    data = exchange(server_port, request_bytes(b"/large", headers=header))
    assert echoed(split_responses(data)[0])["path"] == "/large"


def test_head_over_limit_gets_400(server_port: int) -> None:
    """Send an unfinished head in small pieces until the server responds.

    Small pieces let the server read everything before it closes, so the
    close does not reset the connection before the response is read.
    """
    start = b"GET /large HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Large: "
    piece = b"a" * 16 * 1024
    sent = len(start)
    with socket.create_connection(
        ("127.0.0.1", server_port), timeout=SOCKET_TIMEOUT
    ) as conn:
        conn.sendall(start)
        # At most four times the limit, in case the server never responds.
        while sent < 4 * MAX_REQUEST_HEAD_BYTES:
            readable, _, _ = select.select([conn], [], [], 0.005)
            if readable:
                break
            conn.sendall(piece)
            sent += len(piece)
        data = read_until_closed(conn)
    assert sent > MAX_REQUEST_HEAD_BYTES
    status, body = split_responses(data)[0]
    assert status == 400
    assert body == INVALID_REQUEST_MESSAGE.encode()


def test_body_does_not_count_as_head(server_port: int) -> None:
    body = b"b" * (4 * MAX_REQUEST_HEAD_BYTES)
    data = exchange(server_port, request_bytes(b"/upload", body=body))
    assert echoed(split_responses(data)[0])["body_length"] == len(body)


def test_head_limit_applies_per_request(server_port: int) -> None:
    header = b"X-Large: " + b"a" * (MAX_REQUEST_HEAD_BYTES * 3 // 4) + b"\r\n"
    with socket.create_connection(
        ("127.0.0.1", server_port), timeout=SOCKET_TIMEOUT
    ) as conn:
        for _ in range(3):
            conn.sendall(request_bytes(b"/again", headers=header, close=False))
            # Each response is small, so one read returns all of it.
            response = conn.recv(65_536)
            assert split_responses(response)[0][0] == 200
