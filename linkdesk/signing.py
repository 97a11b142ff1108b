"""`linkdesk signing-key …` and `linkdesk signed-link`: keys for signed links
through the tenant service's admin API, and a signed link built locally."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, TypeAlias

from linkdesk.api_client import (
    CommandError,
    CredentialCommands,
    call,
    client,
    print_result,
    register_credential_commands,
)
from linkdesk.links import LINK_PATH
from linkdesk.tenants import GATEWAY_URL, with_status
from shared import signed_link

KEY_COLUMNS = (
    "id",
    "status",
    "created_at",
    "expires_at",
    "last_used_at",
    "revoked_at",
)

DEFAULT_LINK_TTL_SECONDS = 3600

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(commands: Subparsers) -> None:
    _register_keys(commands)
    _register_signed_link(commands)


def _register_keys(commands: Subparsers) -> None:
    register_credential_commands(
        commands,
        command="signing-key",
        noun="key",
        help_text="issue, rotate, revoke and list a tenant's keys for signed links",
        description="Manage the keys with which a tenant's intranet signs "
        "links. A key is shown once, when it is issued or rotated; store it "
        "then. docs/signed-links.md describes the signing scheme.",
        id_name="key_id",
        handlers=CredentialCommands(
            issue=_issue, rotate=_rotate, revoke=_revoke, list=_list
        ),
    )


def _print_new_key(issued: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print_result(issued, args)
        return
    print(f"key id: {issued['key_id']}")
    print(f"key:    {issued['key']}")
    print(
        "The key is shown only now; hand it to the tenant's intranet over a "
        "safe channel. docs/signed-links.md describes how to sign links."
    )


def _issue(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        issued = call(http, "POST", f"/admin/tenants/{args.tenant_id}/signing-keys")
    _print_new_key(issued, args)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        rotated = call(
            http,
            "POST",
            f"/admin/tenants/{args.tenant_id}/signing-keys/rotate",
            json={"grace_seconds": args.grace},
        )
    _print_new_key(rotated, args)
    if not args.json:
        for old in rotated["expiring"]:
            print(f"key {old['id']} expires at {old['expires_at']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        info = call(
            http,
            "POST",
            f"/admin/tenants/{args.tenant_id}/signing-keys/{args.key_id}/revoke",
        )
    print_result(with_status(info) if not args.json else info, args, KEY_COLUMNS)
    return 0


def _list(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        keys = call(http, "GET", f"/admin/tenants/{args.tenant_id}/signing-keys")
    rows = keys if args.json else [with_status(info) for info in keys]
    print_result(rows, args, KEY_COLUMNS)
    return 0


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
