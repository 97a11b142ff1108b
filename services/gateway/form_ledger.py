"""The ledger of accepted forms, in the gateway's shared key-value bucket.

A form token may be posted again: a double click, a reload, two tabs. Once
a form was accepted, the ledger lets every replica answer a repeat:

- the same values again redirect to the same confirmation, as before;
- other values are rejected (409) with the reference of the accepted
  ticket, because the first accepted text is the ticket and a silent
  redirect would pretend the new text was stored.

A repeat of a form first rendered within the ticket stream's duplicate
window is published again, JetStream drops it and reports a duplicate, and
only then is the ledger read (see `duplicate_window`). A repeat of an older
form is looked up before anything is published.

Entries live as long as the bucket's TTL, which is at least the form
lifetime. When the bucket is unreachable, the ledger is skipped and the
post is published as before, so JetStream's duplicate window and the
ticket table's unique key still make it one ticket.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping, Sequence

import msgspec

from services.gateway.shared_state import SharedState, StateUnavailable


class AcceptedForm(msgspec.Struct, kw_only=True):
    reference: str
    values_digest: str
    """SHA-256 of the accepted field values, to tell a repeat from a change."""


def values_digest(values: Mapping[str, str], fields: Sequence[str]) -> str:
    """Return the SHA-256 of the values of `fields`, in that order."""
    encoded = msgspec.json.encode([values.get(name, "") for name in fields])
    return hashlib.sha256(encoded).hexdigest()


def _key(submission_id: str) -> str:
    return f"form.{submission_id}"


WAIT_INTERVAL_SECONDS = 0.02
"""Pause between reads while waiting for another post's ledger entry."""


async def find(
    state: SharedState, submission_id: str, wait: float = 0.0
) -> AcceptedForm | None:
    """Return the accepted form with this submission id, reading again for up
    to `wait` seconds while there is none yet.

    A post that JetStream reported as a duplicate races the post it repeats,
    which writes the entry only after its own acknowledgement. Returns None
    when no entry appears in time or the bucket does not respond.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            entry, _ = await state.get(_key(submission_id), AcceptedForm)
        except StateUnavailable:
            return None
        if entry is not None or time.monotonic() >= deadline:
            return entry
        await asyncio.sleep(WAIT_INTERVAL_SECONDS)


async def record(state: SharedState, submission_id: str, form: AcceptedForm) -> None:
    """Record an accepted form; the first record of a submission id stays."""
    try:
        await state.swap(_key(submission_id), form, 0)
    except StateUnavailable:
        return
