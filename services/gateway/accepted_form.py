"""Find the accepted form that a post repeats, to respond as to the first post.

A form token may be posted again: a double click, a reload, two tabs. Once
a form was accepted:

- the same values again redirect to the same confirmation;
- other values are rejected (409) with the reference of the accepted
  ticket, because the first accepted text is the ticket and a silent
  redirect would pretend the new text was stored.

Accepting a form shares nothing with other replicas beyond its event; each
replica only remembers the forms it accepted recently (`AcceptedForms`). A
repeat that the replica does not remember is found this way:

- A repeat of a form first rendered within the ticket stream's duplicate
  window is published again. JetStream drops it, and its acknowledgement
  names the stream sequence of the first event, which is read back.
- A repeat of an older form, and a repeat that a check rejects before
  anything is published, are looked up in the ticket service, which knows
  the form once it has stored the first post's ticket.

When neither answers, the post is treated as new: JetStream's duplicate
window and the ticket table's unique key on the submission id still make it
one ticket, and the reporter is shown the confirmation.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from services.gateway import submission
from shared import events, json_errors, messages, subjects
from shared.messaging import REQUEST_ID_HEADER, DependencyUnavailable, request

logger = logging.getLogger(__name__)


class AcceptedForm(msgspec.Struct, frozen=True, kw_only=True):
    reference: str
    values_digest: bytes
    """Digest of the stored values of `submission.FIELDS` (`values_digest`)."""

    def differs_from(self, values: Mapping[str, str]) -> bool:
        """Return whether posted `values` would make another ticket text."""
        return self.values_digest != values_digest(values)


def values_digest(values: Mapping[str, str]) -> bytes:
    """Return the SHA-256 of the values of `submission.FIELDS` as stored."""
    encoded = msgspec.json.encode(submission.stored_values(values))
    return hashlib.sha256(encoded).digest()


RECENT_FORMS = 10_000
"""Accepted forms a gateway replica remembers, about 350 bytes each (3.4 MB)."""


class AcceptedForms:
    """Where a gateway replica finds the accepted form that a post repeats.

    It remembers the last `capacity` forms it accepted itself, and asks the
    stream or the ticket service about any other.
    """

    def __init__(self, nc: Client, timeout: float, capacity: int = RECENT_FORMS):
        self.nc = nc
        self.timeout = timeout
        self.capacity = capacity
        self._recent: OrderedDict[str, AcceptedForm] = OrderedDict()

    def remember(
        self, submission_id: str, reference: str, values: Mapping[str, str]
    ) -> None:
        """Note a form that JetStream has just stored the first event of."""
        self._recent[submission_id] = AcceptedForm(
            reference=reference, values_digest=values_digest(values)
        )
        while len(self._recent) > self.capacity:
            self._recent.popitem(last=False)

    async def find(
        self,
        *,
        tenant_id: str,
        submission_id: str,
        request_id: str,
        sequence: int | None = None,
    ) -> AcceptedForm | None:
        """Return the accepted form with this submission id, or None.

        `sequence` is where JetStream stored the form's first event. It is
        known when JetStream reported this post's publish as a duplicate.
        Without it, the ticket service is requested.
        """
        remembered = self._recent.get(submission_id)
        if remembered is not None:
            return remembered
        if sequence is not None:
            return await from_stream(
                self.nc,
                sequence,
                tenant_id=tenant_id,
                submission_id=submission_id,
                timeout=self.timeout,
                request_id=request_id,
            )
        return await from_ticket_service(
            self.nc,
            tenant_id=tenant_id,
            submission_id=submission_id,
            timeout=self.timeout,
            request_id=request_id,
        )


async def from_stream(
    nc: Client,
    sequence: int,
    *,
    tenant_id: str,
    submission_id: str,
    timeout: float,
    request_id: str,
) -> AcceptedForm | None:
    """Read the event at `sequence` of the ticket stream, which JetStream
    named as the first publish of this form.

    Returns None, with a log line, when the event cannot be read or is not
    this tenant's event of this form.
    """
    if sequence <= 0:
        return None
    try:
        stored = await nc.jetstream(timeout=timeout).get_msg(
            subjects.TICKET_STREAM, seq=sequence
        )
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        _not_found("stream_read_failed", repr(exc), submission_id, request_id)
        return None
    payload = stored.data or b""
    try:
        event = msgspec.json.decode(payload, type=events.TicketSubmitted)
    except json_errors.UNDECODABLE as exc:
        problem = json_errors.explain_decode_error(payload, exc).message
        _not_found("stream_event_invalid", problem, submission_id, request_id)
        return None
    data = event.data
    if data.submission_id != submission_id or data.tenant_id != tenant_id:
        _not_found("stream_event_of_other_form", "", submission_id, request_id)
        return None
    return _accepted(data)


async def from_ticket_service(
    nc: Client,
    *,
    tenant_id: str,
    submission_id: str,
    timeout: float,
    request_id: str,
) -> AcceptedForm | None:
    """Ask the ticket service for the ticket stored from this form.

    Returns None when there is none yet, and, with a log line, when the
    request fails.
    """
    try:
        reply = await request(
            nc,
            subjects.TICKET_FIND_SUBMISSION,
            messages.FindSubmission(tenant_id=tenant_id, submission_id=submission_id),
            messages.SubmissionFound,
            timeout=timeout,
            headers={REQUEST_ID_HEADER: request_id},
        )
    except DependencyUnavailable as exc:
        _not_found(exc.reason, exc.detail, submission_id, request_id)
        return None
    return None if reply.submission is None else _accepted(reply.submission)


def _accepted(
    ticket: events.TicketSubmittedData | messages.StoredSubmission,
) -> AcceptedForm:
    values = {name: getattr(ticket, name) for name in submission.FIELDS}
    return AcceptedForm(reference=ticket.reference, values_digest=values_digest(values))


def _not_found(reason: str, detail: str, submission_id: str, request_id: str) -> None:
    logger.warning(
        "accepted form not readable, post treated as new: %s %s",
        reason,
        detail,
        extra={
            "event": "accepted_form_unreadable",
            "reason": reason,
            "submission_id": submission_id,
            "request_id": request_id,
        },
    )
