"""Build public links the way an intranet should."""

from __future__ import annotations

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
