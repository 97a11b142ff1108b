"""Settings of the ticket service, read once from environment variables.

The consumer's own settings (`TICKET_ACK_WAIT_SECONDS`,
`TICKET_MAX_ACK_PENDING`) are read in `durable.py`, the stream's
(`TICKET_STREAM_*`, `TICKET_DUPLICATE_WINDOW_SECONDS`) in `shared.streams`.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import SettingsError, env_float, env_int, env_str, env_switch


def env_zone(
    name: str, default: str, environ: Mapping[str, str] | None = None
) -> zoneinfo.ZoneInfo:
    """Return the variable `name` as an IANA time zone such as Europe/Zurich."""
    raw = env_str(name, default, environ)
    try:
        return zoneinfo.ZoneInfo(raw)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        msg = f"{name} must be an IANA time zone such as Europe/Zurich, got {raw!r}"
        raise SettingsError(msg) from None


@dataclass(frozen=True)
class TicketSettings:
    fetch_batch: int
    """TICKET_FETCH_BATCH: messages fetched at once (default 64)."""
    batch_wait: float
    """TICKET_BATCH_WAIT_SECONDS: while batches keep coming, how long a batch
    that is not full waits for more messages before it is stored (default
    0.003). Each batch is one transaction and one commit, so under load a
    short wait stores fewer, larger batches (in a benchmark at about 2,000
    posts per second, about 7 instead of 3 tickets per batch)."""
    park_after: int
    """TICKET_PARK_AFTER_DELIVERIES: deliveries of a failing message before
    it is parked (default 5)."""
    tenant_check: bool
    """TICKET_TENANT_CHECK: ask the tenant service whether a submission's
    tenant exists (default on)."""
    number_zone: zoneinfo.ZoneInfo
    """TICKET_NUMBER_TIME_ZONE: time zone of the year in ticket numbers
    (default UTC)."""
    outbox_relay: bool
    """TICKET_OUTBOX_RELAY: publish outbox rows (default on). Off leaves
    events in the outbox; tests use it to stop between commit and publish."""
    outbox_batch: int
    """TICKET_OUTBOX_BATCH: outbox rows published per transaction (default 100)."""
    outbox_poll_seconds: float
    """TICKET_OUTBOX_POLL_SECONDS: longest pause between two looks at the
    outbox (default 1.0). A commit in this process wakes the relay, which
    starts its next round then, but no sooner than 10 ms after the start of
    its last one. While the consumer has a backlog, the relay starts one
    round per this interval, within the bound of `outbox_max_hold`."""
    outbox_max_hold: float
    """TICKET_OUTBOX_MAX_HOLD_SECONDS: longest time the relay holds events
    back while the consumer stores a backlog, counted from when the oldest
    unsent event was written (default 30; 0 never holds them back)."""
    publish_timeout: float
    """TICKET_PUBLISH_TIMEOUT_SECONDS: wait for JetStream's acknowledgements
    of the events that the relay publishes together, and of a replayed
    message (default 5.0)."""
    outbox_keep_days: float
    """TICKET_OUTBOX_KEEP_DAYS: days a sent outbox row is kept before it is
    deleted (default 30, at most 36,500); 0 keeps sent rows for ever."""
    exit_after_outbox_publish: bool
    """TICKET_TEST_EXIT_AFTER_OUTBOX_PUBLISH: for tests only (default off).
    The process exits once the acknowledgements of its first publishes are
    in, before any outbox row is marked sent, as a crash would."""


def from_env(environ: Mapping[str, str] | None = None) -> TicketSettings:
    """Read every setting; raise SettingsError naming the first bad one."""
    return TicketSettings(
        fetch_batch=env_int("TICKET_FETCH_BATCH", 64, minimum=1, environ=environ),
        batch_wait=env_float(
            "TICKET_BATCH_WAIT_SECONDS", 0.003, minimum=0.0, environ=environ
        ),
        park_after=env_int(
            "TICKET_PARK_AFTER_DELIVERIES", 5, minimum=1, environ=environ
        ),
        tenant_check=env_switch("TICKET_TENANT_CHECK", True, environ),
        number_zone=env_zone("TICKET_NUMBER_TIME_ZONE", "UTC", environ),
        outbox_relay=env_switch("TICKET_OUTBOX_RELAY", True, environ),
        outbox_batch=env_int("TICKET_OUTBOX_BATCH", 100, minimum=1, environ=environ),
        outbox_poll_seconds=env_float(
            "TICKET_OUTBOX_POLL_SECONDS", 1.0, minimum=0.05, environ=environ
        ),
        outbox_max_hold=env_float(
            "TICKET_OUTBOX_MAX_HOLD_SECONDS", 30.0, minimum=0.0, environ=environ
        ),
        publish_timeout=env_float(
            "TICKET_PUBLISH_TIMEOUT_SECONDS", 5.0, minimum=0.1, environ=environ
        ),
        outbox_keep_days=env_float(
            "TICKET_OUTBOX_KEEP_DAYS",
            30.0,
            minimum=0.0,
            maximum=36_500.0,
            environ=environ,
        ),
        exit_after_outbox_publish=env_switch(
            "TICKET_TEST_EXIT_AFTER_OUTBOX_PUBLISH", False, environ
        ),
    )
