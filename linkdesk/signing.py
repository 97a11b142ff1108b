"""`linkdesk signing-key …` and `linkdesk signed-link`: keys for signed links
through the tenant service's admin API, and a signed link built locally."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, TypeAlias

from linkdesk import credentials
from linkdesk.api_client import (
    CommandError,
)
from linkdesk.links import LINK_PATH
from linkdesk.tenants import GATEWAY_URL
from shared import signed_link

DEFAULT_LINK_TTL_SECONDS = 3600

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(commands: Subparsers) -> None:
    _register_keys(commands)
    _register_signed_link(commands)


def _print_new_key(issued: dict[str, Any]) -> None:
    print(f"key id: {issued['key_id']}")
    print(f"key:    {issued['key']}")
    print(
        "The key is shown only now; hand it to the tenant's intranet over a "
        "safe channel. docs/signed-links.md describes how to sign links."
    )


KEYS = credentials.Credential(
    command="signing-key",
    noun="key",
    path="signing-keys",
    id_name="key_id",
    help_text="issue, rotate, revoke and list a tenant's keys for signed links",
    description="Manage the keys with which a tenant's intranet signs "
    "links. A key is shown once, when it is issued or rotated; store it "
    "then. docs/signed-links.md describes the signing scheme.",
    print_issued=_print_new_key,
)


def _register_keys(commands: Subparsers) -> None:
    credentials.register(commands, KEYS)


def _register_signed_link(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "signed-link",
        help="build a signed link for one person, to check an intranet against",
        description="Print a signed link built here, without asking any "
        "service, so that an intranet's link builder can be compared with it.",
    )
    parser.add_argument("key_id", help="the signing key's id")
    parser.add_argument("tenant_id", help="the tenant's id (a UUID) that owns the key")
    parser.add_argument("personnel_number", help="the person's personnel number")
    parser.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_LINK_TTL_SECONDS,
        metavar="SECONDS",
        help=f"seconds the link stays valid (default {DEFAULT_LINK_TTL_SECONDS})",
    )
    parser.add_argument("--location", default="", help="preset, fixed location")
    parser.add_argument("--category", default="", help="preset, fixed category")
    parser.add_argument(
        "--base-url",
        default=None,
        help="public address of the gateway (default: $LINKDESK_GATEWAY_URL or "
        "http://127.0.0.1:8080)",
    )
    parser.set_defaults(handler=_print_signed_link)


def _print_signed_link(args: argparse.Namespace) -> int:
    key = os.environ.get("LINKDESK_SIGNING_KEY", "")
    if not key:
        # The key is read from the environment, so it stays out of the
        # shell history and the process list.
        msg = "set LINKDESK_SIGNING_KEY to the key that `signing-key issue` printed"
        raise CommandError(msg)
    if args.ttl < 1:
        msg = f"--ttl must be at least 1 second, got {args.ttl}"
        raise CommandError(msg)
    claims = signed_link.Claims(
        tenant_id=args.tenant_id,
        personnel_number=args.personnel_number,
        expires_at=int(time.time()) + args.ttl,
        location=args.location,
        category=args.category,
    )
    try:
        token = signed_link.sign(args.key_id, key, claims)
    except (signed_link.InvalidClaims, UnicodeEncodeError) as exc:
        msg = f"cannot sign the link: {exc}"
        raise CommandError(msg) from None
    variable, default = GATEWAY_URL
    base = (args.base_url or os.environ.get(variable, default)).rstrip("/")
    print(f"{base}{LINK_PATH}?{signed_link.QUERY_PREFIX}{token}")
    return 0
