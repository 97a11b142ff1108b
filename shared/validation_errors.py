"""Error responses of the admin APIs to request values that fail validation.

Litestar responds to every failed check of a handler's parameters with the
detail "Validation failed for POST /path" and lists the fields only in
`extra`. A client that shows only the detail learns nothing, and an empty
body is listed as the message `'data'`. Here the detail names each field
and its problem, and an empty body says what to send.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import ValidationException

_LITESTAR_DETAIL = "Validation failed for "

MAX_LISTED = 5
"""Maximum problems named in the detail. `extra` lists all of them."""

EMPTY_BODY = (
    "the request body is empty; send a JSON object with the fields that this "
    "request takes (see /schema/openapi.json)"
)


def _clarified(error: Any) -> Any:
    if not isinstance(error, dict):
        return error
    # Litestar reports a missing body as the KeyError of its `data` argument.
    if error.get("key") == "data" and error.get("message") == "'data'":
        return {**error, "message": EMPTY_BODY}
    return error


def _named(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    key = error.get("key")
    message = str(error.get("message", "invalid value"))
    if key in (None, "data"):
        return message
    return f"{key}: {message}"


def validation_error_handler(
    _: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, object]]:
    """Return a 400 for a ValidationException, with a detail that names each field.

    Details that our own code wrote already name the field and stay as
    they are.
    """
    assert isinstance(exc, ValidationException)
    detail = str(exc.detail)
    extra = exc.extra
    if isinstance(extra, list) and extra and detail.startswith(_LITESTAR_DETAIL):
        extra = [_clarified(error) for error in extra]
        named = "; ".join(_named(error) for error in extra[:MAX_LISTED])
        more = len(extra) - MAX_LISTED
        detail = f"{detail}: {named}"
        if more > 0:
            detail += f"; and {more} more (see extra)"
    body: dict[str, object] = {"status_code": 400, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=400)
