"""`linkdesk tenant …` and `linkdesk secret …`: tenants, the intake switch,
link secrets and the audit trail, through the tenant service's admin API."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, TypeAlias

from linkdesk import credentials
from linkdesk.api_client import (
    CommandError,
    add_common_arguments,
    call,
    client,
    print_result,
)
from linkdesk.links import LINK_PATH

TENANT_COLUMNS = ("id", "name", "language", "categories", "intake_enabled")
AUDIT_COLUMNS = ("id", "created_at", "admin", "action", "details")

GATEWAY_URL = ("LINKDESK_GATEWAY_URL", "http://127.0.0.1:8080")
"""Public address of the gateway, printed in the link format of a new secret."""

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(commands: Subparsers) -> None:
    _register_tenant(commands)
    _register_secret(commands)


# --- tenant -----------------------------------------------------------------


def _register_tenant(commands: Subparsers) -> None:
    tenant = commands.add_parser(
        "tenant",
        help="create, list, show and update tenants; switch intake; read the audit",
        description="Manage tenants through the tenant service "
        "($LINKDESK_TENANT_URL, default http://127.0.0.1:8081).",
    )
    actions = tenant.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="create a tenant")
    create.add_argument("name", help="the tenant's name as the form shows it")
    _add_settings(create)
    create.add_argument(
        "--intake",
        choices=("on", "off"),
        default="off",
        help="switch tickets without login on or off at once (default off)",
    )
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list every tenant")
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="show one tenant")
    show.add_argument("tenant_id", help="the tenant's id (a UUID)")
    show.set_defaults(handler=_show)

    update = actions.add_parser(
        "update", help="change a tenant's name, language or categories"
    )
    update.add_argument("tenant_id", help="the tenant's id (a UUID)")
    update.add_argument("--name", help="new name")
    _add_settings(update)
    update.add_argument(
        "--frame-ancestor",
        dest="frame_ancestors",
        action="append",
        metavar="ORIGIN",
        help="an origin such as https://intranet.example.org that may show the "
        "form in a frame; repeat for several. Replaces the whole list",
    )
    update.add_argument(
        "--no-frame-ancestors",
        action="store_true",
        help="let no site show the form in a frame (the default)",
    )
    update.add_argument(
        "--signed-links",
        choices=("required", "optional"),
        help="required: only signed links open the form, raw-secret links "
        "get the invalid-link page; optional: both work (the default)",
    )
    update.set_defaults(handler=_update)

    intake = actions.add_parser(
        "intake",
        help="switch tickets without login on or off",
        description="Off makes every link of the tenant invalid at once; on "
        "lets links with a valid secret open the form again.",
    )
    intake.add_argument("tenant_id", help="the tenant's id (a UUID)")
    intake.add_argument("state", choices=("on", "off"), help="on or off")
    intake.set_defaults(handler=_intake)

    audit = actions.add_parser(
        "audit", help="show who changed the tenant and its secrets, newest first"
    )
    audit.add_argument("tenant_id", help="the tenant's id (a UUID)")
    audit.add_argument(
        "--limit", type=int, default=100, help="entries to show, 1-1000 (default 100)"
    )
    audit.add_argument(
        "--before", type=int, help="show entries older than this entry id"
    )
    audit.set_defaults(handler=_audit)

    for parser in (create, listing, show, update, intake, audit):
        add_common_arguments(parser)


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--language",
        choices=("de", "en", "fr", "it"),
        help="default language of the form (create: de)",
    )
    parser.add_argument(
        "--category",
        dest="categories",
        action="append",
        metavar="CATEGORY",
        help="a category of the form; repeat for several. Replaces the whole "
        "list (create: IT, Gebäude, Sonstiges)",
    )


def _create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "intake_enabled": args.intake == "on"}
    if args.language:
        body["language"] = args.language
    if args.categories:
        body["categories"] = args.categories
    with client("tenant", args) as http:
        tenant = call(http, "POST", "/admin/tenants", json=body)
    print_result(tenant, args, TENANT_COLUMNS)
    return 0


def _list(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        tenants = call(http, "GET", "/admin/tenants")
    print_result(tenants, args, TENANT_COLUMNS)
    return 0


def _show(args: argparse.Namespace) -> int:
    with client("tenant", args) as http:
        tenant = call(http, "GET", f"/admin/tenants/{args.tenant_id}")
    print_result(
        tenant,
        args,
        (
            *TENANT_COLUMNS,
            "frame_ancestors",
            "signed_links_required",
            "created_at",
            "updated_at",
        ),
    )
    return 0


def _update(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.name is not None:
        body["name"] = args.name
    if args.language:
        body["language"] = args.language
    if args.categories:
        body["categories"] = args.categories
    if args.frame_ancestors and args.no_frame_ancestors:
        msg = "pass either --frame-ancestor or --no-frame-ancestors, not both"
        raise CommandError(msg)
    if args.frame_ancestors or args.no_frame_ancestors:
        body["frame_ancestors"] = args.frame_ancestors or []
    if args.signed_links:
        body["signed_links_required"] = args.signed_links == "required"
    if not body:
        msg = (
            "nothing to update: pass --name, --language, --category,"
            " --frame-ancestor, --no-frame-ancestors or --signed-links"
        )
        raise CommandError(msg)
    with client("tenant", args) as http:
        tenant = call(http, "PATCH", f"/admin/tenants/{args.tenant_id}", json=body)
    print_result(tenant, args, TENANT_COLUMNS)
    return 0


def _intake(args: argparse.Namespace) -> int:
    action = "enable" if args.state == "on" else "disable"
    with client("tenant", args) as http:
        tenant = call(http, "POST", f"/admin/tenants/{args.tenant_id}/intake/{action}")
    print_result(tenant, args, TENANT_COLUMNS)
    return 0


def _audit(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.before is not None:
        params["before"] = args.before
    with client("tenant", args) as http:
        entries = call(
            http, "GET", f"/admin/tenants/{args.tenant_id}/audit", params=params
        )
    if args.json:
        print_result(entries, args)
        return 0
    rows = [
        {**entry, "details": json.dumps(entry["details"], ensure_ascii=False)}
        for entry in entries
    ]
    print_result(rows, args, AUDIT_COLUMNS)
    return 0


# --- secret -----------------------------------------------------------------


def _print_new_secret(issued: dict[str, Any]) -> None:
    variable, default = GATEWAY_URL
    base = os.environ.get(variable, default).rstrip("/")
    print(f"secret:      {issued['secret']}")
    print(f"secret id:   {issued['info']['id']}")
    print(f"link format: {base}{LINK_PATH}?<secret>&<personnel number>")
    print(
        "The secret is shown only now; hand it to the tenant's intranet over a "
        "safe channel. Percent-encode the personnel number in each link."
    )


SECRETS = credentials.Credential(
    command="secret",
    noun="secret",
    path="secrets",
    id_name="secret_id",
    help_text="issue, rotate, revoke and list a tenant's link secrets",
    description="Manage link secrets through the tenant service. A secret "
    "is shown once, when it is issued or rotated; store it then.",
    print_issued=_print_new_secret,
)


def _register_secret(commands: Subparsers) -> None:
    credentials.register(commands, SECRETS)
