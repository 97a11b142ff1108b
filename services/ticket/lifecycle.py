"""Ticket statuses and the changes between them; no I/O."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from typing import Final, get_args

from shared.admin_api import Conflict
from shared.events import TicketStatus

STATUSES: Final[tuple[TicketStatus, ...]] = get_args(TicketStatus)

TRANSITIONS: Final[Mapping[TicketStatus, frozenset[TicketStatus]]] = {
    "new": frozenset({"in_progress"}),
    "in_progress": frozenset({"resolved"}),
    # Reopening sends a resolved or closed ticket back to the help desk.
    "resolved": frozenset({"closed", "in_progress"}),
    "closed": frozenset({"in_progress"}),
}
"""Statuses that each status may change to."""


class InvalidTransition(Conflict):
    """A status change that the lifecycle does not allow (HTTP 409)."""

    def __init__(self, ticket: str, current: TicketStatus, target: str) -> None:
        self.current = current
        self.target = target
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "none"
        super().__init__(
            f"ticket {ticket} cannot change from {current} to {target}; "
            f"allowed from {current}: {allowed}"
        )


def check_transition(ticket: str, current: TicketStatus, target: TicketStatus) -> None:
    """Raise InvalidTransition unless `current` may change to `target`."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(ticket, current, target)


def format_number(year: int, counter: int) -> str:
    """Return a ticket number such as `2026-000042`; past 999999 it grows wider."""
    return f"{year:04d}-{counter:06d}"


def number_year(submitted_at: dt.datetime, zone: zoneinfo.ZoneInfo) -> int:
    """Return the year that a submission's ticket number carries.

    The year is taken from the submission time rather than the time the ticket
    was stored, so a redelivered message always gets the same year.
    """
    return submitted_at.astimezone(zone).year
