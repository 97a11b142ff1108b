"""Time from a submission's acceptance until its ticket row was committed.

The gateway sets `submitted_at` just before it publishes a submission, and
the benchmark's PostgreSQL runs with `track_commit_timestamp = on`, so
`pg_xact_commit_timestamp(xmin)` is the moment the storing transaction
committed. Both clocks are the same machine's.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

SERVER_SETTINGS = {"track_commit_timestamp": "on"}
"""PostgreSQL settings that the measurement needs, given at server start."""


def percentile(values: list[float], percent: float) -> float | None:
    """Return the value at `percent` of the sorted values (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))
    return ordered[index]


async def commit_delays(
    database_url: str, since: dt.datetime, until: dt.datetime
) -> dict[str, float | int | None]:
    """Return how many tickets were submitted from `since` until `until`, and
    the p50, p99 and maximum of their acceptance-to-commit delays in ms.

    The delays are None when the server does not record commit times.
    """
    connection = await asyncpg.connect(database_url)
    try:
        # Without the setting, the function raises instead of returning null.
        tracked = await connection.fetchval("SHOW track_commit_timestamp") == "on"
        committed = "pg_xact_commit_timestamp(xmin)" if tracked else "NULL::timestamptz"
        rows = await connection.fetch(
            f"SELECT extract(epoch FROM {committed} - submitted_at) * 1000 AS ms"
            " FROM ticket.tickets WHERE submitted_at >= $1 AND submitted_at < $2",
            since,
            until,
        )
    finally:
        await connection.close()
    values = [float(row["ms"]) for row in rows if row["ms"] is not None]
    return {
        "rows": len(rows),
        "p50_ms": percentile(values, 50),
        "p99_ms": percentile(values, 99),
        "max_ms": max(values) if values else None,
    }
