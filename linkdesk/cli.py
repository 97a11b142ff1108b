"""The `linkdesk` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from linkdesk import dev, links


def _link(args: argparse.Namespace) -> int:
    print(links.build_link(args.base_url, args.secret, args.personnel_number))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkdesk", description="Tickets without a user account."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    dev_parser = commands.add_parser(
        "dev",
        help="start the whole system on this machine and print a working link",
        description=dev.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev.add_arguments(dev_parser)
    dev_parser.set_defaults(handler=dev.run)

    link_parser = commands.add_parser(
        "link",
        help="build a person's public link from a secret and a personnel number",
    )
    link_parser.add_argument("secret", help="the tenant's link secret")
    link_parser.add_argument("personnel_number", help="the person's personnel number")
    link_parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8080",
        help="public address of the gateway (default http://127.0.0.1:8080)",
    )
    link_parser.set_defaults(handler=_link)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a `linkdesk` command and return its exit code."""
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


def console() -> None:
    """Entry point of the installed `linkdesk` script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
