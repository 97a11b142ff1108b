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
- A repeat of an older form, a repeat that a check rejects before anything
  is published, and a repeat whose first event cannot be read are looked up
  in the ticket service. It finds the form once it has stored the first
  post's ticket.

When neither source can be read, the post is treated as new: JetStream's
duplicate window and the ticket table's unique key on the submission id
still make it one ticket, and the reporter is shown the confirmation.
A replica remembers only forms first rendered within the duplicate window,
because only for those does JetStream itself distinguish the first publish
from a repeat.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client

from services.gateway import submission
from shared import events, json_errors, messages, reference, subjects
from shared.messaging import REQUEST_ID_HEADER, DependencyUnavailable, request

logger = logging.getLogger(__name__)


class AcceptedForm(msgspec.Struct, frozen=True, kw_only=True, gc=False):
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


class Unreadable(Exception):
    """A source of accepted forms could not be read or returned an unusable reply."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason} {detail}".strip())


RECENT_FORMS = 10_000
"""Accepted forms a gateway replica remembers, about 350 bytes each (3.4 MB)."""


class AcceptedForms:
    """The lookup of the accepted form that a post repeats, for one replica.

    It remembers the last `capacity` forms the replica accepted itself, and
    reads the stream or requests the ticket service for any other.
    """

    def __init__(
        self, nc: Client, timeout: float, capacity: int = RECENT_FORMS
    ) -> None:
        self.nc = nc
        self.timeout = timeout
        self.capacity = capacity
        self._recent: OrderedDict[str, AcceptedForm] = OrderedDict()

    def remember(
        self, submission_id: str, reference: str, values: Mapping[str, str]
    ) -> None:
        """Note a form whose event JetStream stored first.

        Only JetStream's duplicate window makes that certain, so only forms
        first rendered within it are to be noted. For an older form, the
        ticket service may not have stored an earlier post yet.
        """
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
        Without it, or when that event cannot be read, the ticket service is
        requested. Every source that cannot be read gets a log line.
        """
        remembered = self._recent.get(submission_id)
        if remembered is not None:
            return remembered
        if sequence is not None:
            try:
                return await from_stream(
                    self.nc,
                    sequence,
                    tenant_id=tenant_id,
                    submission_id=submission_id,
                    timeout=self.timeout,
                )
            except Unreadable as exc:
                _log_unreadable(exc, submission_id, request_id)
        try:
            return await from_ticket_service(
                self.nc,
                tenant_id=tenant_id,
                submission_id=submission_id,
                timeout=self.timeout,
                request_id=request_id,
            )
        except Unreadable as exc:
            _log_unreadable(exc, submission_id, request_id)
            return None


async def from_stream(
    nc: Client,
    sequence: int,
    *,
    tenant_id: str,
    submission_id: str,
    timeout: float,
) -> AcceptedForm:
    """Read the event at `sequence` of the ticket stream, which JetStream
    named as the first publish of this form.

    Raises `Unreadable` when the event cannot be read or is not this
    tenant's event of this form.
    """
    if sequence <= 0:
        raise Unreadable("stream_sequence_missing", f"sequence {sequence}")
    try:
        stored = await nc.jetstream(timeout=timeout).get_msg(
            subjects.TICKET_STREAM, seq=sequence
        )
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        raise Unreadable("stream_read_failed", repr(exc)) from None
    payload = stored.data or b""
    try:
        event = msgspec.json.decode(payload, type=events.TicketSubmitted)
    except json_errors.UNDECODABLE as exc:
        problem = json_errors.explain_decode_error(payload, exc).message
        raise Unreadable("stream_event_invalid", problem) from None
    data = event.data
    if data.submission_id != submission_id or data.tenant_id != tenant_id:
        raise Unreadable("stream_event_of_other_form", f"sequence {sequence}")
    return accepted_form_of(data, submission_id)


async def from_ticket_service(
    nc: Client,
    *,
    tenant_id: str,
    submission_id: str,
    timeout: float,
    request_id: str,
) -> AcceptedForm | None:
    """Request the ticket stored from this form from the ticket service.

    Returns None when there is none yet. Raises `Unreadable` when the request
    fails or the reply does not fit the form.
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
        raise Unreadable(exc.reason, exc.detail) from None
    if reply.submission is None:
        return None
    return accepted_form_of(reply.submission, submission_id)


def accepted_form_of(
    ticket: events.TicketSubmittedData | messages.StoredSubmission,
    submission_id: str,
) -> AcceptedForm:
    """Return the accepted form that a stored event or ticket describes.

    Raises `Unreadable` when its reference is not the one that follows from
    `submission_id`, because then it describes another form.
    """
    try:
        expected = reference.for_submission(uuid.UUID(submission_id))
    except ValueError:
        raise Unreadable("submission_id_invalid", submission_id) from None
    if ticket.reference != expected:
        raise Unreadable("reference_mismatch", f"got {ticket.reference[:40]!r}")
    values = {name: getattr(ticket, name) for name in submission.FIELDS}
    return AcceptedForm(reference=expected, values_digest=values_digest(values))


def _log_unreadable(exc: Unreadable, submission_id: str, request_id: str) -> None:
    logger.warning(
        "accepted form not readable: %s %s",
        exc.reason,
        exc.detail,
        extra={
            "event": "accepted_form_unreadable",
            "reason": exc.reason,
            "submission_id": submission_id,
            "request_id": request_id,
        },
    )
