"""The `linkdesk` command line.

Each command group lives in its own module with a `register(commands)`
function that adds its sub-parsers and sets `handler` on them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from linkdesk import dev, events, links, personnel, signing, tenants, tickets
from linkdesk.api_client import CommandError, fail

COMMAND_MODULES = (dev, links, tickets, events, tenants, signing, personnel)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linkdesk", description="Tickets without a user account."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run a `linkdesk` command and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandError as exc:
        return fail(str(exc))
    return code


def console() -> None:
    """Entry point of the installed `linkdesk` script."""
    sys.exit(main())


if __name__ == "__main__":
    console()
