"""`linkdesk person …`: a tenant's personnel list through the personnel
service's admin API, including CSV imports.

Single people are addressed with the API's query form (`/person?number=`),
so numbers that contain `/` work too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TypeAlias

import httpx

from linkdesk.api_client import (
    CommandError,
    add_common_arguments,
    call,
    client,
    print_result,
)

PERSON_COLUMNS = ("personnel_number", "name", "active", "updated_at")
LISTED_NUMBERS = 20
"""Numbers shown per import category in the table output; --json shows all."""

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(commands: Subparsers) -> None:
    person = commands.add_parser(
        "person",
        help="add, show, update, deactivate, list and import a tenant's people",
        description="Manage a tenant's personnel list through the personnel "
        "service ($LINKDESK_PERSONNEL_URL, default http://127.0.0.1:8082).",
    )
    actions = person.add_subparsers(dest="action", required=True)

    add = actions.add_parser("add", help="add a person")
    _add_person_arguments(add)
    add.add_argument("name", help="the person's name as the form shows it")
    add.set_defaults(handler=_add)

    show = actions.add_parser("show", help="show a person")
    _add_person_arguments(show)
    show.set_defaults(handler=_show)

    update = actions.add_parser("update", help="change a person's name")
    _add_person_arguments(update)
    update.add_argument("--name", required=True, help="new name")
    update.set_defaults(handler=_update)

    deactivate = actions.add_parser(
        "deactivate", help="deactivate a person: their link stops working"
    )
    _add_person_arguments(deactivate)
    deactivate.set_defaults(handler=_set_active, active=False)

    reactivate = actions.add_parser(
        "reactivate", help="reactivate a person: their link works again"
    )
    _add_person_arguments(reactivate)
    reactivate.set_defaults(handler=_set_active, active=True)

    listing = actions.add_parser(
        "list", help="list people ordered by personnel number, a page at a time"
    )
    listing.add_argument("tenant_id", help="the tenant's id (a UUID)")
    listing.add_argument(
        "--search",
        metavar="Q",
        help="keep people whose number starts with Q or whose name contains "
        "Q, ignoring case",
    )
    listing.add_argument(
        "--limit", type=int, default=100, help="people per page, 1-1000 (default 100)"
    )
    listing.add_argument(
        "--after",
        metavar="NUM",
        help="start after this personnel number (the last one of the previous page)",
    )
    listing.set_defaults(handler=_list)

    importing = actions.add_parser(
        "import",
        help="import a CSV personnel list",
        description="Import a CSV file with the columns Personalnummer and "
        "Name (optional: Aktiv). A file with any error is rejected as a "
        "whole with every error listed, and nothing is applied.",
    )
    importing.add_argument("tenant_id", help="the tenant's id (a UUID)")
    importing.add_argument("file", type=Path, help="the CSV file")
    importing.add_argument(
        "--dry-run",
        action="store_true",
        help="report what would change without writing anything",
    )
    importing.add_argument(
        "--encoding",
        choices=("utf-8", "windows-1252"),
        default="utf-8",
        help="the file's encoding (default utf-8, with or without BOM)",
    )
    importing.add_argument(
        "--delimiter",
        choices=("auto", ";", ","),
        default="auto",
        help="the field separator (default: detected from the header line)",
    )
    importing.add_argument(
        "--deactivate-missing",
        action="store_true",
        help="deactivate the tenant's active people whom the file does not list",
    )
    importing.set_defaults(handler=_import)

    for parser in (add, show, update, deactivate, reactivate, listing, importing):
        add_common_arguments(parser)


def _add_person_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id", help="the tenant's id (a UUID)")
    parser.add_argument(
        "personnel_number", help="the personnel number, leading zeros included"
    )


def _add(args: argparse.Namespace) -> int:
    with client("personnel", args) as http:
        person = call(
            http,
            "POST",
            f"/admin/tenants/{args.tenant_id}/people",
            json={"personnel_number": args.personnel_number, "name": args.name},
        )
    print_result(person, args, PERSON_COLUMNS)
    return 0


def _show(args: argparse.Namespace) -> int:
    with client("personnel", args) as http:
        person = call(
            http,
            "GET",
            f"/admin/tenants/{args.tenant_id}/person",
            params={"number": args.personnel_number},
        )
    print_result(person, args, (*PERSON_COLUMNS, "created_at", "id"))
    return 0


def _update(args: argparse.Namespace) -> int:
    with client("personnel", args) as http:
        person = call(
            http,
            "PATCH",
            f"/admin/tenants/{args.tenant_id}/person",
            params={"number": args.personnel_number},
            json={"name": args.name},
        )
    print_result(person, args, PERSON_COLUMNS)
    return 0


def _set_active(args: argparse.Namespace) -> int:
    action = "reactivate" if args.active else "deactivate"
    with client("personnel", args) as http:
        person = call(
            http,
            "POST",
            f"/admin/tenants/{args.tenant_id}/person/{action}",
            params={"number": args.personnel_number},
        )
    print_result(person, args, PERSON_COLUMNS)
    return 0


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.search:
        params["q"] = args.search
    if args.after is not None:
        params["after"] = args.after
    with client("personnel", args) as http:
        people = call(
            http, "GET", f"/admin/tenants/{args.tenant_id}/people", params=params
        )
    print_result(people, args, PERSON_COLUMNS)
    if not args.json and len(people) == args.limit:
        last = people[-1]["personnel_number"]
        print(f"More people may follow: add --after {last!r} for the next page.")
    return 0


def _import(args: argparse.Namespace) -> int:
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        msg = f"cannot read {args.file}: {exc.strerror}"
        raise CommandError(msg) from None
    path = f"/admin/tenants/{args.tenant_id}/people/import"
    params = {
        "dry_run": str(args.dry_run).lower(),
        "encoding": args.encoding,
        "delimiter": args.delimiter,
        "deactivate_missing": str(args.deactivate_missing).lower(),
    }
    with client("personnel", args) as http:
        try:
            response = http.post(
                path,
                params=params,
                content=data,
                headers={"Content-Type": "text/csv"},
            )
        except httpx.HTTPError as exc:
            msg = f"cannot reach {http.base_url}: {exc}; is the service running?"
            raise CommandError(msg) from None
    if response.status_code == 422:
        raise CommandError(_rejection_message(args.file, response.json()))
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        msg = f"POST {path} failed with {response.status_code}: {detail}"
        raise CommandError(msg)
    _print_report(response.json(), args)
    return 0


def _rejection_message(file: Path, body: dict[str, Any]) -> str:
    lines = [
        f"{file} was rejected with {body['error_count']} error(s); nothing was "
        "applied. Fix the file and import it again:"
    ]
    for error in body["errors"]:
        where = "file" if error["line"] is None else f"line {error['line']}"
        if error["column"]:
            where += f", column {error['column']}"
        lines.append(f"  {where}: {error['message']}")
    if body["error_count"] > len(body["errors"]):
        lines.append(f"  … {body['error_count'] - len(body['errors'])} more")
    return "\n".join(lines)


def _print_report(report: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print_result(report, args)
        return
    counts = report["counts"]
    print(
        f"{counts['added']} added, {counts['updated']} updated, "
        f"{counts['deactivated']} deactivated, {counts['unchanged']} unchanged "
        f"(encoding {report['encoding']}, separator {report['delimiter']!r})"
    )
    for category in ("added", "updated", "deactivated"):
        numbers = report[category]
        if not numbers:
            continue
        shown = ", ".join(numbers[:LISTED_NUMBERS])
        more = len(numbers) - LISTED_NUMBERS
        suffix = f" and {more} more (--json lists all)" if more > 0 else ""
        print(f"{category}: {shown}{suffix}")
    if report["ignored_columns"]:
        print(f"ignored columns: {', '.join(report['ignored_columns'])}")
    if report["dry_run"]:
        print("Dry run: nothing was written.")
