"""Bearer tokens for the admin HTTP APIs.

`LINKDESK_ADMIN_TOKENS` lists `name:token` pairs separated by commas. The
name identifies who made a change; the token is compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

from shared.settings import SettingsError, env_str

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


def parse_tokens(raw: str) -> dict[str, str]:
    """Parse `name:token,name:token` into a mapping of token to name."""
    tokens: dict[str, str] = {}
    for number, entry in enumerate(
        filter(None, (e.strip() for e in raw.split(","))), 1
    ):
        name, separator, token = entry.partition(":")
        if not separator or not name.strip() or not token.strip():
            msg = (
                f"LINKDESK_ADMIN_TOKENS entry {number} must look like name:token, "
                "got an entry without a name or token"
            )
            raise SettingsError(msg)
        if len(token.strip()) < MIN_TOKEN_LENGTH:
            msg = (
                f"LINKDESK_ADMIN_TOKENS token of {name.strip()!r} is shorter than "
                f"{MIN_TOKEN_LENGTH} characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
            raise SettingsError(msg)
        tokens[token.strip()] = name.strip()
    return tokens


def tokens_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Read the admin tokens; log a warning when none are configured."""
    tokens = parse_tokens(env_str("LINKDESK_ADMIN_TOKENS", "", environ))
    if not tokens:
        logger.warning(
            "no admin tokens configured: every admin request gets 401",
            extra={"event": "admin_tokens_missing"},
        )
    return tokens


def find_admin(tokens: Mapping[str, str], authorization: str | None) -> str | None:
    """Return the name of the admin whose bearer token `authorization` carries."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    found: str | None = None
    # Compare with every token, so the time taken does not reveal which
    # token shares a prefix with the presented one.
    for token, name in tokens.items():
        if hmac.compare_digest(token.encode(), presented.strip().encode()):
            found = name
    return found


def admin_guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # type: ignore[type-arg]
    """Litestar guard: reject requests without a configured bearer token."""
    tokens: Mapping[str, str] = connection.app.state.admin_tokens
    name = find_admin(tokens, connection.headers.get("authorization"))
    if name is None:
        raise NotAuthorizedException(
            detail="missing or invalid bearer token in the Authorization header",
            headers={"WWW-Authenticate": 'Bearer realm="linkdesk-admin"'},
        )
    connection.state.admin_name = name
