"""Commands for a tenant's credentials: link secrets and signing keys.

Both share one life cycle in the tenant service's admin API: issued and
shown once, rotated with a grace period for the others, revoked at once,
and listed without the credential itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from linkdesk.api_client import add_common_arguments, call, client, print_result

COLUMNS = ("id", "status", "created_at", "expires_at", "last_used_at", "revoked_at")


@dataclass(frozen=True)
class Credential:
    """One kind of credential and how its commands talk about it."""

    command: str
    """Command group, such as `secret`."""
    noun: str
    """Word in help texts, such as `secret` or `key`."""
    path: str
    """Path segment below `/admin/tenants/{id}/`, such as `secrets`."""
    id_name: str
    """Argument that names one credential, such as `secret_id`."""
    help_text: str
    description: str
    print_issued: Callable[[dict[str, Any]], None]
    """Print a newly issued credential for a person to copy (table mode)."""
    columns: Sequence[str] = COLUMNS


def with_status(info: dict[str, Any]) -> dict[str, Any]:
    """Add `status` (active, expiring, expired, revoked) for the table."""
    now = dt.datetime.now(dt.UTC)
    expires = info.get("expires_at")
    if info.get("revoked_at"):
        status = "revoked"
    elif expires and dt.datetime.fromisoformat(expires) <= now:
        status = "expired"
    elif expires:
        status = "expiring"
    else:
        status = "active"
    return {**info, "status": status}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], kind: Credential
) -> None:
    """Add `<command> issue|rotate|revoke|list` for `kind`."""
    noun = kind.noun
    group = commands.add_parser(
        kind.command, help=kind.help_text, description=kind.description
    )
    actions = group.add_subparsers(dest="action", required=True)

    issue = actions.add_parser(
        "issue", help=f"add a {noun}; the tenant's other {noun}s keep working"
    )
    issue.set_defaults(handler=lambda args: _issue(kind, args))

    rotate = actions.add_parser(
        "rotate",
        help=f"issue a new {noun} and let the other active {noun}s expire",
        description=f"Issue a new {noun}. Every other active {noun} of the "
        "tenant expires after the grace period, so the intranet can switch "
        "without an outage; with --grace 0 they stop at once.",
    )
    rotate.add_argument(
        "--grace",
        type=int,
        default=0,
        metavar="SECONDS",
        help=f"seconds the old {noun}s keep working, 0 to 2592000 (default 0)",
    )
    rotate.set_defaults(handler=lambda args: _rotate(kind, args))

    revoke = actions.add_parser("revoke", help=f"revoke one {noun} at once")
    revoke.set_defaults(handler=lambda args: _revoke(kind, args))

    listing = actions.add_parser(
        "list", help=f"list a tenant's {noun}s (never the {noun}s themselves)"
    )
    listing.set_defaults(handler=lambda args: _list(kind, args))

    for parser in (issue, rotate, revoke, listing):
        parser.add_argument("tenant_id", help="the tenant's id (a UUID)")
        add_common_arguments(parser)
    revoke.add_argument(
        kind.id_name, help=f"the {noun}'s id from `{kind.command} list`"
    )


def _base(kind: Credential, args: argparse.Namespace) -> str:
    return f"/admin/tenants/{args.tenant_id}/{kind.path}"


def _show_issued(kind: Credential, issued: dict[str, Any], json: bool) -> None:
    if json:
        print_result(issued, argparse.Namespace(json=True))
    else:
        kind.print_issued(issued)


def _issue(kind: Credential, args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        issued = call(http, "POST", _base(kind, args))
    _show_issued(kind, issued, args.json)
    return 0


def _rotate(kind: Credential, args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        rotated = call(
            http,
            "POST",
            f"{_base(kind, args)}/rotate",
            json={"grace_seconds": args.grace},
        )
    _show_issued(kind, rotated, args.json)
    if not args.json:
        for old in rotated["expiring"]:
            print(f"{kind.noun} {old['id']} expires at {old['expires_at']}")
    return 0


def _revoke(kind: Credential, args: argparse.Namespace) -> int:
    credential_id = getattr(args, kind.id_name)
    with client("tenant", args) as http:
        info = call(http, "POST", f"{_base(kind, args)}/{credential_id}/revoke")
    print_result(info if args.json else with_status(info), args, kind.columns)
    return 0


def _list(kind: Credential, args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        found = call(http, "GET", _base(kind, args))
    rows = found if args.json else [with_status(info) for info in found]
    print_result(rows, args, kind.columns)
    return 0
