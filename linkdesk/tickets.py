"""`linkdesk ticket` and `linkdesk parked`: the ticket service's admin API."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from linkdesk.api_client import add_common_arguments, call, client, print_result
from shared.events import TicketStatus

STATUSES = get_args(TicketStatus)

TICKET_COLUMNS = (
    "id",
    "number",
    "status",
    "category",
    "personnel_number",
    "subject",
    "stored_at",
)
HISTORY_COLUMNS = ("changed_at", "from_status", "to_status", "changed_by", "comment")
PARKED_COLUMNS = (
    "id",
    "stream_sequence",
    "subject",
    "deliveries",
    "parked_at",
    "replayed_at",
    "error",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _register_ticket(commands)
    _register_parked(commands)


def _register_ticket(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    group = commands.add_parser(
        "ticket", help="list, show and change the status of a tenant's tickets"
    ).add_subparsers(dest="ticket_command", required=True)

    listing = group.add_parser("list", help="list a tenant's tickets, newest first")
    listing.add_argument("tenant_id", help="tenant id (UUID)")
    listing.add_argument("--status", choices=STATUSES, help="only this status")
    listing.add_argument("--category", help="only this category")
    listing.add_argument("--personnel-number", help="only this reporter")
    listing.add_argument(
        "--created-from",
        help="stored at or after this time, RFC 3339 with offset "
        "(e.g. 2026-01-01T00:00:00+01:00)",
    )
    listing.add_argument(
        "--created-to", help="stored before this time, RFC 3339 with offset"
    )
    listing.add_argument(
        "--limit", type=int, default=50, help="tickets per page, 1 to 500 (default 50)"
    )
    listing.add_argument(
        "--before",
        type=int,
        help="ticket id to continue below: the last id of the previous page",
    )
    add_common_arguments(listing)
    listing.set_defaults(handler=_list_tickets)

    show = group.add_parser("show", help="show one ticket with its history")
    show.add_argument("tenant_id", help="tenant id (UUID)")
    show.add_argument(
        "ticket",
        help="ticket id (42), number (2026-000042) or reference (T-7KQ2X-M9R4P)",
    )
    add_common_arguments(show)
    show.set_defaults(handler=_show_ticket)

    status = group.add_parser(
        "status",
        help="change a ticket's status",
        description="Change a ticket's status: new → in_progress → resolved → "
        "closed; resolved and closed tickets can be reopened to in_progress.",
    )
    status.add_argument("tenant_id", help="tenant id (UUID)")
    status.add_argument(
        "ticket",
        help="ticket id (42), number (2026-000042) or reference (T-7KQ2X-M9R4P)",
    )
    status.add_argument("status", choices=STATUSES, help="the new status")
    status.add_argument(
        "--comment", default="", help="comment recorded with the change"
    )
    add_common_arguments(status)
    status.set_defaults(handler=_change_status)


def _register_parked(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    group = commands.add_parser(
        "parked", help="list, replay or discard messages the ticket service parked"
    ).add_subparsers(dest="parked_command", required=True)

    listing = group.add_parser("list", help="list parked messages, oldest first")
    listing.add_argument(
        "--all", action="store_true", help="include messages already replayed"
    )
    listing.add_argument(
        "--limit", type=int, default=100, help="messages to list (default 100)"
    )
    add_common_arguments(listing)
    listing.set_defaults(handler=_list_parked)

    replay = group.add_parser(
        "replay",
        help="publish a parked message's bytes to its subject again",
        description="Publish the parked message once more, with a new "
        "Nats-Msg-Id, after fixing what made it fail. If it fails again it is "
        "parked again under a new id.",
    )
    replay.add_argument("id", type=int, help="id of the parked message")
    add_common_arguments(replay)
    replay.set_defaults(handler=_replay_parked)

    discard = group.add_parser("discard", help="delete a parked message for good")
    discard.add_argument("id", type=int, help="id of the parked message")
    add_common_arguments(discard)
    discard.set_defaults(handler=_discard_parked)


def _list_tickets(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in (
        "status",
        "category",
        "personnel_number",
        "created_from",
        "created_to",
        "before",
    ):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    with client("ticket", args) as http:
        tickets = call(
            http, "GET", f"/admin/tenants/{args.tenant_id}/tickets", params=params
        )
    print_result(tickets, args, TICKET_COLUMNS)
    return 0


def _print_detail(detail: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print_result(detail, args)
        return
    ticket = detail["ticket"]
    width = max(len(key) for key in ticket)
    for key, value in ticket.items():
        print(f"{key.ljust(width)}  {value}")
    print()
    print_result(detail["history"], args, HISTORY_COLUMNS)


def _show_ticket(args: argparse.Namespace) -> int:
    with client("ticket", args) as http:
        detail = call(
            http, "GET", f"/admin/tenants/{args.tenant_id}/tickets/{args.ticket}"
        )
    _print_detail(detail, args)
    return 0


def _change_status(args: argparse.Namespace) -> int:
    with client("ticket", args) as http:
        detail = call(
            http,
            "POST",
            f"/admin/tenants/{args.tenant_id}/tickets/{args.ticket}/status",
            json={"status": args.status, "comment": args.comment},
        )
    _print_detail(detail, args)
    return 0


def _list_parked(args: argparse.Namespace) -> int:
    with client("ticket", args) as http:
        parked = call(
            http,
            "GET",
            "/admin/parked-messages",
            params={"limit": args.limit, "include_replayed": args.all},
        )
    print_result(parked, args, PARKED_COLUMNS)
    return 0


def _replay_parked(args: argparse.Namespace) -> int:
    with client("ticket", args) as http:
        replayed = call(http, "POST", f"/admin/parked-messages/{args.id}/replay")
    print_result(replayed, args, PARKED_COLUMNS)
    return 0


def _discard_parked(args: argparse.Namespace) -> int:
    with client("ticket", args) as http:
        call(http, "DELETE", f"/admin/parked-messages/{args.id}")
    if args.json:
        print_result({"discarded": args.id}, args)
    else:
        print(f"parked message {args.id} discarded")
    return 0
