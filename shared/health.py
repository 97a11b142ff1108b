"""Liveness and readiness endpoints shared by every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from litestar import Response, Router, get
from litestar.datastructures import State

ReadinessCheck = Callable[[State], Awaitable[dict[str, bool]]]


def health_router(check: ReadinessCheck) -> Router:
    """Build `/health/live` (the process runs) and `/health/ready` (every
    dependency the service needs answers)."""

    @get("/live", sync_to_thread=False)
    def live() -> dict[str, str]:
        return {"status": "ok"}

    @get("/ready")
    async def ready(state: State) -> Response[dict[str, object]]:
        checks = await check(state)
        ok = all(checks.values())
        return Response(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    return Router(path="/health", route_handlers=[live, ready], include_in_schema=False)
