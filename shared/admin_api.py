"""Pieces every admin HTTP API shares: errors as JSON and OpenAPI settings."""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import asyncpg
from litestar import Request, Response
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

logger = logging.getLogger(__name__)

AdminRequest: TypeAlias = Request[Any, Any, Any]
"""Request type of admin handlers; the guard sets `state.admin_name`."""


class NotFound(LookupError):
    """An admin request names a resource that does not exist (HTTP 404)."""


class Conflict(ValueError):
    """An admin request conflicts with stored data (HTTP 409)."""


def log_admin_action(
    message: str, event: str, request: AdminRequest, **ids: Any
) -> None:
    """Log a change made through an admin API with the admin token's name."""
    logger.info(
        message,
        extra={
            "event": event,
            "admin": request.state.admin_name,
            **{key: str(value) for key, value in ids.items()},
        },
    )


def _json_error(status: int, message: str) -> Response[dict[str, object]]:
    return Response({"status_code": status, "detail": message}, status_code=status)


def not_found_handler(_: AdminRequest, exc: Exception) -> Response[dict[str, object]]:
    return _json_error(404, str(exc))


def conflict_handler(_: AdminRequest, exc: Exception) -> Response[dict[str, object]]:
    return _json_error(409, str(exc))


def internal_error_handler(
    request: AdminRequest, exc: Exception
) -> Response[dict[str, object]]:
    """Log an unexpected error with its traceback; the caller sees no details."""
    logger.error(
        "unhandled error in %s %s",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"event": "unhandled_error"},
    )
    return _json_error(500, "internal error, see the service log")


def unstorable_value_handler(
    request: AdminRequest, exc: Exception
) -> Response[dict[str, object]]:
    """Return a 400 for a value that passed validation but that PostgreSQL or
    Python cannot hold, such as a number beyond 64 bits or a date in year 1."""
    logger.info(
        "admin request rejected: %s",
        exc,
        extra={"event": "invalid_value", "path": request.url.path},
    )
    return _json_error(
        400, f"invalid value in the request: {exc}; check numbers, dates and text"
    )


EXCEPTION_HANDLERS = {
    NotFound: not_found_handler,
    Conflict: conflict_handler,
    asyncpg.DataError: unstorable_value_handler,
    OverflowError: unstorable_value_handler,
    RecursionError: unstorable_value_handler,
    500: internal_error_handler,
}


def openapi_config(title: str, description: str) -> OpenAPIConfig:
    """OpenAPI document at `/schema/openapi.json`, declaring bearer authentication."""
    return OpenAPIConfig(
        title=title,
        version="1",
        description=description,
        path="/schema",
        components=Components(
            security_schemes={
                "AdminToken": SecurityScheme(type="http", scheme="bearer")
            }
        ),
        security=[{"AdminToken": []}],
        # JSON and YAML only: the interactive viewers load their scripts from
        # public CDNs, and a token pasted into them would reach that code.
        render_plugins=[
            JsonRenderPlugin(path=["/openapi.json", "/"]),
            YamlRenderPlugin(),
        ],
    )
