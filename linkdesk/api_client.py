"""Helpers of the admin commands: service addresses, the token, output.

Every admin command reads the service addresses from the environment and the
token from `--token` or `LINKDESK_ADMIN_TOKEN`, calls one admin HTTP API, and
prints a table or, with `--json`, the API's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx

SERVICE_URLS = {
    "tenant": ("LINKDESK_TENANT_URL", "http://127.0.0.1:8081"),
    "personnel": ("LINKDESK_PERSONNEL_URL", "http://127.0.0.1:8082"),
    "ticket": ("LINKDESK_TICKET_URL", "http://127.0.0.1:8083"),
}


class CommandError(Exception):
    """A command failed; the message is printed and the exit code is 1."""


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--json` and `--token` to an admin command."""
    parser.add_argument(
        "--json", action="store_true", help="print the API's JSON instead of a table"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="admin bearer token (default: $LINKDESK_ADMIN_TOKEN)",
    )


def client(service: str, args: argparse.Namespace) -> httpx.Client:
    """Return an HTTP client for the admin API of `service`."""
    variable, default = SERVICE_URLS[service]
    token = getattr(args, "token", None) or os.environ.get("LINKDESK_ADMIN_TOKEN", "")
    if not token:
        msg = (
            "no admin token: set LINKDESK_ADMIN_TOKEN or pass --token "
            "(`linkdesk dev` prints one)"
        )
        raise CommandError(msg)
    return httpx.Client(
        base_url=os.environ.get(variable, default),
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def call(http: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    """Send a request and return the decoded JSON; raise `CommandError` with
    the API's message on any error status or an unreachable service."""
    try:
        response = http.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        msg = f"cannot reach {http.base_url}: {exc}; is the service running?"
        raise CommandError(msg) from None
    if response.status_code >= 400:
        try:
            body = response.json()
            detail = body.get("detail", body)
            extra = body.get("extra")
        except ValueError:
            detail, extra = response.text, None
        msg = f"{method} {path} failed with {response.status_code}: {detail}"
        if extra:
            msg += f" {json.dumps(extra, ensure_ascii=False)}"
        raise CommandError(msg)
    if not response.content:
        return None
    return response.json()


def print_result(
    data: Any, args: argparse.Namespace, columns: Sequence[str] | None = None
) -> None:
    """Print `data` as JSON with `--json`, else as a table of `columns`."""
    if getattr(args, "json", False) or columns is None:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return
    rows = [data] if isinstance(data, Mapping) else list(data)
    print_table(rows, columns)


def print_table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> None:
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [
        max([len(column), *(len(line[index]) for line in cells)])
        for index, column in enumerate(columns)
    ]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def fail(message: str) -> int:
    print(f"linkdesk: error: {message}", file=sys.stderr)
    return 1
