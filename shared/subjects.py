"""NATS subjects and JetStream names shared by every service.

Each subject carries a version, so a changed message type gets a new subject
and old and new replicas can run side by side during an upgrade.
"""

from typing import Final

TENANT_RESOLVE_SECRET: Final = "linkdesk.v1.tenant.resolve_secret"  # noqa: S105
"""Request: which tenant a link secret belongs to (`ResolveSecret`)."""

TENANT_GET: Final = "linkdesk.v1.tenant.get"
"""Request: a tenant's public form settings by id (`GetTenant`)."""

TENANT_VERIFY_SIGNED_LINK: Final = "linkdesk.v1.tenant.verify_signed_link"
"""Request: check a signed link with the tenant's key (`VerifySignedLink`)."""

PERSONNEL_RESOLVE: Final = "linkdesk.v1.personnel.resolve"
"""Request: the person with a personnel number in a tenant (`ResolvePerson`)."""

TICKET_FIND_SUBMISSION: Final = "linkdesk.v1.ticket.find_submission"
"""Request: the stored ticket of a tenant's submission id (`FindSubmission`)."""

TICKET_STREAM: Final = "TICKETS"
"""JetStream stream that holds every ticket event."""

TICKET_EVENTS_WILDCARD: Final = "tickets.v1.>"
"""All subjects of the ticket stream."""

TICKET_SUBMITTED_WILDCARD: Final = "tickets.v1.*.submitted"
"""Submissions of every tenant, consumed by the ticket service."""

TICKET_STORE_CONSUMER: Final = "ticket-store"
"""Durable pull consumer through which the ticket service stores submissions."""

QUEUE_GROUP: Final = "linkdesk"
"""Queue group of request/reply handlers, so replicas share the requests."""


def ticket_submitted(tenant_id: str) -> str:
    """Return the subject of a tenant's submissions.

    The tenant id is part of the subject so that NATS permissions can limit
    a subscriber to one tenant.
    """
    return f"tickets.v1.{tenant_id}.submitted"


DIRECTORY_EVENTS_WILDCARD: Final = "linkdesk.v1.directory.>"
"""Every tenant and personnel change event, read by the gateway's cache."""


def tenant_changed(tenant_id: str) -> str:
    """Return the subject of a tenant's change events (`TenantChanged`)."""
    return f"linkdesk.v1.directory.tenant_changed.{tenant_id}"


def person_changed(tenant_id: str) -> str:
    """Return the subject of change events of a tenant's people (`PersonChanged`)."""
    return f"linkdesk.v1.directory.person_changed.{tenant_id}"


TICKET_CREATED_WILDCARD: Final = "tickets.v1.*.created"
"""Tickets stored by the ticket service, of every tenant."""

TICKET_STATUS_CHANGED_WILDCARD: Final = "tickets.v1.*.status_changed"
"""Status changes of tickets, of every tenant."""

TICKET_EVENT_KINDS: Final = ("submitted", "created", "status_changed")
"""Last subject token of each ticket event type, in the order they happen."""


def ticket_event(tenant_id: str, kind: str) -> str:
    """Return the subject of one kind of a tenant's ticket events.

    Raises ValueError for a kind outside `TICKET_EVENT_KINDS`.
    """
    if kind not in TICKET_EVENT_KINDS:
        msg = (
            f"unknown ticket event kind {kind!r}, expected one of {TICKET_EVENT_KINDS}"
        )
        raise ValueError(msg)
    return f"tickets.v1.{tenant_id}.{kind}"


def tenant_ticket_events(tenant_id: str) -> str:
    """Return the wildcard of every ticket event of one tenant."""
    return f"tickets.v1.{tenant_id}.>"


def ticket_created(tenant_id: str) -> str:
    """Return the subject of a tenant's stored tickets."""
    return ticket_event(tenant_id, "created")


def ticket_status_changed(tenant_id: str) -> str:
    """Return the subject of a tenant's ticket status changes."""
    return ticket_event(tenant_id, "status_changed")
