"""Read service settings from environment variables and fail fast on bad ones.

Every reader names the variable and the value it rejected, so an operator
can fix a deployment from the first log line.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Mapping
from urllib.parse import urlsplit


class SettingsError(ValueError):
    """A setting is missing or has a value that cannot be used."""


def env_str(name: str, default: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the variable `name`, or `default` when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or default


def env_int(
    name: str,
    default: int,
    *,
    minimum: int = 0,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Return the variable `name` as an integer of at least `minimum`."""
    raw = env_str(name, "", environ)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        msg = f"{name} must be an integer, got {raw!r}"
        raise SettingsError(msg) from None
    if value < minimum:
        msg = f"{name} must be at least {minimum}, got {value}"
        raise SettingsError(msg)
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    environ: Mapping[str, str] | None = None,
) -> float:
    """Return the variable `name` as a number of seconds or similar unit."""
    raw = env_str(name, "", environ)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        msg = f"{name} must be a number, got {raw!r}"
        raise SettingsError(msg) from None
    # float() reads "nan" and "inf" too, which no setting can use.
    if not math.isfinite(value):
        msg = f"{name} must be a finite number, got {raw!r}"
        raise SettingsError(msg)
    if value < minimum:
        msg = f"{name} must be at least {minimum}, got {value}"
        raise SettingsError(msg)
    if value > maximum:
        msg = f"{name} must be at most {maximum}, got {value}"
        raise SettingsError(msg)
    return value


def env_trusted_proxies(
    name: str, default: str, environ: Mapping[str, str] | None = None
) -> str:
    """Return the variable `name`: comma-separated IP addresses or networks
    of the proxies whose `X-Forwarded-For` is trusted, or `*` for any."""
    raw = env_str(name, default, environ)
    for entry in (part.strip() for part in raw.split(",")):
        if not entry or entry == "*":
            continue
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            msg = (
                f"{name} must list IP addresses or networks, such as 172.30.99.1 "
                f"or 10.0.0.0/8, or *, got {entry!r}"
            )
            raise SettingsError(msg) from None
    return raw


def env_switch(
    name: str, default: bool, environ: Mapping[str, str] | None = None
) -> bool:
    """Return the variable `name` as a switch: `on` or `off`."""
    raw = env_str(name, "on" if default else "off", environ).lower()
    if raw not in ("on", "off"):
        msg = f"{name} must be on or off, got {raw!r}"
        raise SettingsError(msg)
    return raw == "on"


def _checked_url(name: str, url: str) -> str:
    """Return `url` if its host and port can be read; raise otherwise.

    The error never repeats the value, which may hold a password: an
    unencoded "/" or "#" in it moves the rest into the path, and a client's
    own error would then quote the password as a port.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading the port checks it
    except ValueError:
        valid = False
    else:
        valid = bool(parts.scheme)
    if not valid:
        msg = (
            f"{name} is not a valid URL (value not shown, as it may hold a "
            "password); percent-encode any of / # ? @ : in the user or password"
        )
        raise SettingsError(msg)
    return url


def nats_servers(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the servers of `NATS_URL`, a comma-separated list."""
    raw = env_str("NATS_URL", "nats://127.0.0.1:4222", environ)
    return [
        _checked_url("NATS_URL", part.strip())
        for part in raw.split(",")
        if part.strip()
    ]


def server_address(url: str) -> str:
    """Return the host and port of a server URL, for logs and messages.

    NATS and database URLs may carry a user and password, which must never
    reach a log line.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an invalid URL"
    if not host:
        return "no host"
    host_text = f"[{host}]" if ":" in host else host
    return f"{host_text}:{port}" if port else host_text


def database_url(environ: Mapping[str, str] | None = None) -> str:
    """Return `DATABASE_URL`, a libpq connection URI."""
    url = env_str(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/linkdesk", environ
    )
    # A multi-host URL is left to the client, which reads the hosts itself.
    return url if "," in url else _checked_url("DATABASE_URL", url)


def http_address(
    default_port: int, environ: Mapping[str, str] | None = None
) -> tuple[str, int]:
    """Return `HTTP_HOST` (default 127.0.0.1) and `HTTP_PORT` of the service."""
    host = env_str("HTTP_HOST", "127.0.0.1", environ)
    port = env_int("HTTP_PORT", default_port, minimum=1, environ=environ)
    return host, port


def request_timeout(environ: Mapping[str, str] | None = None) -> float:
    """Return `NATS_REQUEST_TIMEOUT`, seconds to wait for another service."""
    return env_float("NATS_REQUEST_TIMEOUT", 2.0, minimum=0.05, environ=environ)
