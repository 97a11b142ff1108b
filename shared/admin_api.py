"""Pieces every admin HTTP API shares: errors as JSON, JSON body decoding and
OpenAPI settings."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, TypeAlias

import asyncpg
from litestar import Request, Response
from litestar.exceptions import SerializationException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from shared import json_errors, validation_errors

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


_EXPLAIN_IN_THREAD_BYTES = 64 * 1024
"""Bodies above this size are explained in a worker thread."""


class JsonBodyRequest(Request[Any, Any, Any]):
    """Request that explains a JSON body that fails to decode: the problem,
    the field and the fix.

    Litestar decodes a JSON body with msgspec in `Request.json()` and turns a
    `DecodeError` into a 400 that repeats msgspec's message. Those messages
    name no field and can be false: a lone surrogate escape is reported as
    "Input data was truncated". This class keeps msgspec's decoding and
    explains only a body that fails it. The body is decoded after the
    route's guards, so only an authorised caller gets this far.
    """

    async def json(self) -> Any:
        try:
            return await super().json()
        except SerializationException as exc:
            # msgspec's own error is the cause; its type and message tell
            # explain_decode_error what kind of failure this was.
            error: BaseException = exc.__cause__ or exc
        except (UnicodeDecodeError, RecursionError) as exc:
            # msgspec raises RecursionError for deep nesting, and some
            # versions UnicodeDecodeError for bytes that are not UTF-8.
            # Litestar wraps neither.
            error = exc
        body = await self.body()
        if len(body) > _EXPLAIN_IN_THREAD_BYTES:
            # The explanation walks the whole document in Python (an estimated
            # 0.7 s per MB on a 2-core machine), which would stall the other
            # requests and the service's NATS handlers on this event loop.
            problem = await asyncio.to_thread(
                json_errors.explain_decode_error, body, error
            )
        else:
            problem = json_errors.explain_decode_error(body, error)
        raise self._invalid_body(problem) from None

    def _invalid_body(self, problem: json_errors.JsonProblem) -> ValidationException:
        logger.info(
            "admin request rejected: invalid JSON body: %s",
            problem.reason,
            extra={
                "event": "invalid_json_body",
                "path": self.url.path,
                "problem": problem.kind,
                "json_path": problem.path,
            },
        )
        fix = problem.fix
        media_type = self.content_type[0]
        if problem.kind == "not_json" and media_type and not _is_json(media_type):
            fix += (
                f", with Content-Type: application/json instead of {media_type[:100]}"
            )
        extra = None
        if problem.path is not None:
            extra = [{"key": problem.path, "message": problem.reason, "source": "body"}]
        return ValidationException(
            detail=f"invalid JSON in the request body: {problem.reason}; {fix}",
            extra=extra,
        )


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


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
    ValidationException: validation_errors.validation_error_handler,
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
