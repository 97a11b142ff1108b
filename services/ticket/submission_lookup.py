"""Answer the gateway's question whether a form was already stored as a ticket.

The gateway sends this request before it publishes a form rendered longer
ago than the stream's duplicate window, so that a repeat of such a form gets
the first ticket's confirmation or a 409 instead of being published again.
"""

from __future__ import annotations

import uuid

import asyncpg

from services.ticket import repository
from shared import messages


async def find_submission(
    pool: asyncpg.Pool, request: messages.FindSubmission
) -> messages.SubmissionFound:
    """Return the reference and values of the tenant's ticket stored from that
    form, or `unknown_submission` when there is none (yet)."""
    try:
        tenant_id = uuid.UUID(request.tenant_id)
        submission_id = uuid.UUID(request.submission_id)
    except ValueError:
        return messages.SubmissionFound(reason="unknown_submission")
    ticket = await repository.find_by_submission(pool, tenant_id, submission_id)
    if ticket is None:
        return messages.SubmissionFound(reason="unknown_submission")
    return messages.SubmissionFound(
        submission=messages.StoredSubmission(
            reference=ticket.reference,
            category=ticket.category,
            subject=ticket.subject,
            description=ticket.description,
            location=ticket.location,
            urgency=ticket.urgency,
        )
    )
