"""ASGI middleware: request ids, public headers, and an access log without
query strings (the query of a link carries the secret)."""

from __future__ import annotations

import logging
import time

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway.pages import PUBLIC_HEADERS
from shared.metrics import Metrics, route_label
from shared.random_ids import RandomIds

logger = logging.getLogger("linkdesk.access")

TENANT_ID = "tenant_id"
"""Key of the request's scope state under which a handler leaves the tenant
it served, for the access line."""

_PUBLIC_HEADERS = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in PUBLIC_HEADERS.items()
]


def access_middleware(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """Wrap `app` to set the request id, add the public headers under
    `/public`, log one access line per HTTP request and time it in `metrics`.

    The gateway's one wrapper does what `shared.metrics.instrument` does for
    the other services, one wrapper less on every request.
    """
    request_ids = RandomIds()

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        request_id = request_ids.hex()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method = str(scope.get("method", ""))
        started = time.perf_counter()
        status = 500
        public = scope["path"].startswith("/public")

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" in present:
                    # The page chose its own frame policy; a default
                    # X-Frame-Options: DENY must not contradict it.
                    present.add(b"x-frame-options")
                if public:
                    headers += [h for h in _PUBLIC_HEADERS if h[0] not in present]
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            metrics.observe_http(method, route_label(scope, status), status, elapsed)
            path = _shortened(scope["path"])
            fields = {
                "event": "http_request",
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "request_id": request_id,
            }
            tenant_id = state.get(TENANT_ID)
            if tenant_id is not None:
                fields["tenant_id"] = tenant_id
            logger.info("%s %s %s", method, path, status, extra=fields)

    return middleware


MAX_LOGGED_PATH = 200
"""Characters of a request path that the access log keeps. The server reads
paths of up to 256 KB, and each access line contains its path twice."""


def _shortened(path: str) -> str:
    if len(path) <= MAX_LOGGED_PATH:
        return path
    return f"{path[:MAX_LOGGED_PATH]}…({len(path)} characters)"
