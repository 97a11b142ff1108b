"""Reject form posts that a browser sent from another site.

The signed form token already ties a post to a form that this gateway
rendered, and another site cannot read that token. These checks add what
the browser reports about where a post came from, when it reports it:

- `Sec-Fetch-Site` other than `same-origin` or `none` (a typed address):
  the post came from another site, or from a sibling subdomain;
- `Origin` naming another host. Our own form sends `Origin: null`, because
  its page has `Referrer-Policy: no-referrer` (Fetch standard, "append a
  request Origin header"), so `null` passes;
- `Referer` naming another host (our own pages send none).

Clients that send none of these headers, such as scripts and old browsers,
pass; the token is their check. A gateway behind a reverse proxy needs the
proxy to pass the original `Host` header on, or every post that names an
origin is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def _host_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.netloc.lower() or None


def cross_site_reason(headers: Mapping[str, str]) -> str | None:
    """Return why a post looks cross-site, for the log, or None."""
    host = headers.get("host", "").lower()
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ALLOWED_FETCH_SITES:
        return "cross_site_fetch"
    origin = headers.get("origin")
    if origin is not None and origin != "null" and _host_of(origin) != host:
        return "foreign_origin"
    referer = headers.get("referer")
    if referer is not None and _host_of(referer) != host:
        return "foreign_referer"
    return None
