"""Build public links the way an intranet should."""

from __future__ import annotations

import argparse
from urllib.parse import quote

LINK_PATH = "/public/TicketAllgmein/Ticket.aspx"


def build_link(base_url: str, secret: str, personnel_number: str) -> str:
    """Return `base_url` + the link path + `?<secret>&<personnel number>`,
    both values percent-encoded (RFC 3986, nothing left unencoded but
    letters, digits and `-._~`)."""
    return (
        f"{base_url.rstrip('/')}{LINK_PATH}"
        f"?{quote(secret, safe='')}&{quote(personnel_number, safe='')}"
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "link",
        help="build a person's public link from a secret and a personnel number",
        description="Print the public link of one person, both values "
        "percent-encoded, to check an intranet's link builder against.",
    )
    parser.add_argument("secret", help="the tenant's link secret")
    parser.add_argument("personnel_number", help="the person's personnel number")
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8080",
        help="public address of the gateway (default http://127.0.0.1:8080)",
    )
    parser.set_defaults(handler=_print_link)


def _print_link(args: argparse.Namespace) -> int:
    print(build_link(args.base_url, args.secret, args.personnel_number))
    return 0
