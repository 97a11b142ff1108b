"""NATS subjects and JetStream names shared by every service.

Each subject carries a version, so a changed message type gets a new subject
and old and new replicas can run side by side during an upgrade.
"""

from typing import Final

TENANT_RESOLVE_SECRET: Final = "linkdesk.v1.tenant.resolve_secret"  # noqa: S105
"""Request: which tenant a link secret belongs to (`ResolveSecret`)."""

TENANT_GET: Final = "linkdesk.v1.tenant.get"
"""Request: a tenant's public form settings by id (`GetTenant`)."""

PERSONNEL_RESOLVE: Final = "linkdesk.v1.personnel.resolve"
"""Request: the person with a personnel number in a tenant (`ResolvePerson`)."""

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
