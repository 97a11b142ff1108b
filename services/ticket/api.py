"""Admin HTTP API of the ticket service."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import ServiceUnavailableException, ValidationException
from litestar.params import Parameter

from services.ticket import replay, repository
from shared.admin_api import AdminRequest
from shared.admin_auth import admin_guard
from shared.events import TicketStatus

logger = logging.getLogger(__name__)

Comment = Annotated[str, msgspec.Meta(max_length=2000)]
TicketParameter = Annotated[
    str,
    Parameter(
        description="ticket id such as 42, number such as 2026-000042, or the "
        "reference the reporter was shown, such as T-7KQ2X-M9R4P"
    ),
]


class StatusChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: TicketStatus
    comment: Comment = ""


class ParkedMessageDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A parked message with its bytes as base64 and as text where they decode."""

    message: repository.ParkedMessage
    headers: dict[str, str]
    data_base64: str
    data_text: str | None


def _ticket_condition_error(exc: ValueError) -> ValidationException:
    return ValidationException(detail=str(exc))


class TicketController(Controller):
    path = "/admin"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["tickets"]  # noqa: RUF012

    @get("/tenants/{tenant_id:uuid}/tickets", operation_id="ListTickets")
    async def list_tickets(
        self,
        state: State,
        tenant_id: uuid.UUID,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
        before: Annotated[
            int | None,
            Parameter(
                ge=1,
                description="continue below this ticket id: pass the id of the "
                "last ticket of the previous page (keyset pagination)",
            ),
        ] = None,
        status: TicketStatus | None = None,
        category: str | None = None,
        personnel_number: str | None = None,
        created_from: Annotated[
            dt.datetime | None,
            Parameter(description="stored at or after this time (RFC 3339)"),
        ] = None,
        created_to: Annotated[
            dt.datetime | None,
            Parameter(description="stored before this time (RFC 3339)"),
        ] = None,
    ) -> list[repository.Ticket]:
        """List a tenant's tickets, newest first, with optional filters."""
        for name, value in (("created_from", created_from), ("created_to", created_to)):
            if value is not None and value.tzinfo is None:
                raise ValidationException(
                    detail=f"{name} {value.isoformat()} has no UTC offset; "
                    "add one, for example 2026-01-31T00:00:00+01:00"
                )
        if created_from and created_to and created_from >= created_to:
            raise ValidationException(
                detail=f"created_from {created_from.isoformat()} must be before "
                f"created_to {created_to.isoformat()}"
            )
        return await repository.list_tickets(
            state.pool,
            tenant_id,
            limit=limit,
            before=before,
            where=repository.TicketFilter(
                status=status,
                category=category,
                personnel_number=personnel_number,
                created_from=created_from,
                created_to=created_to,
            ),
        )

    @get("/tenants/{tenant_id:uuid}/tickets/{ticket:str}", operation_id="GetTicket")
    async def get_ticket(
        self, state: State, tenant_id: uuid.UUID, ticket: TicketParameter
    ) -> repository.TicketDetail:
        """Show one ticket of a tenant with its status history."""
        try:
            return await repository.get_ticket(state.pool, tenant_id, ticket)
        except repository.InvalidTicketReference as exc:
            raise _ticket_condition_error(exc) from None

    @post(
        "/tenants/{tenant_id:uuid}/tickets/{ticket:str}/status",
        operation_id="ChangeTicketStatus",
        status_code=200,
    )
    async def change_status(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        ticket: TicketParameter,
        data: StatusChange,
    ) -> repository.TicketDetail:
        """Change a ticket's status; 409 when the lifecycle forbids the change."""
        try:
            detail = await repository.change_status(
                state.pool,
                tenant_id,
                ticket,
                to_status=data.status,
                comment=data.comment,
                changed_by=request.state.admin_name,
            )
        except repository.InvalidTicketReference as exc:
            raise _ticket_condition_error(exc) from None
        if state.relay is not None:
            state.relay.wake()
        logger.info(
            "ticket status changed",
            extra={
                "event": "ticket_status_changed",
                "tenant_id": str(tenant_id),
                "ticket_id": detail.ticket.id,
                "status": data.status,
                "admin": request.state.admin_name,
            },
        )
        return detail

    @get("/parked-messages", operation_id="ListParkedMessages")
    async def list_parked(
        self,
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
        include_replayed: Annotated[
            bool, Parameter(description="also list messages already replayed")
        ] = False,
    ) -> list[repository.ParkedMessage]:
        """List messages the consumer could not store, oldest first."""
        return await repository.list_parked(
            state.pool, limit=limit, include_replayed=include_replayed
        )

    @get("/parked-messages/{parked_id:int}", operation_id="GetParkedMessage")
    async def get_parked(self, state: State, parked_id: int) -> ParkedMessageDetail:
        """Show a parked message with its headers and bytes."""
        parked = await repository.get_parked(state.pool, parked_id)
        try:
            text: str | None = parked.data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return ParkedMessageDetail(
            message=parked.message,
            headers=parked.headers,
            data_base64=base64.b64encode(parked.data).decode("ascii"),
            data_text=text,
        )

    @post(
        "/parked-messages/{parked_id:int}/replay",
        operation_id="ReplayParkedMessage",
        status_code=200,
    )
    async def replay_parked(
        self, state: State, request: AdminRequest, parked_id: int
    ) -> repository.ParkedMessage:
        """Publish a parked message's bytes to its subject again, once."""
        try:
            return await replay.replay_parked(
                state.pool,
                state.nc,
                parked_id,
                admin=request.state.admin_name,
                timeout=state.ticket_settings.publish_timeout,
            )
        except replay.ReplayFailed as exc:
            raise ServiceUnavailableException(detail=str(exc)) from None

    @delete("/parked-messages/{parked_id:int}", operation_id="DiscardParkedMessage")
    async def discard_parked(
        self, state: State, request: AdminRequest, parked_id: int
    ) -> None:
        """Delete a parked message for good."""
        parked = await repository.delete_parked(state.pool, parked_id)
        logger.info(
            "parked message discarded",
            extra={
                "event": "parked_discarded",
                "parked_id": parked_id,
                "stream_seq": parked.stream_sequence,
                "admin": request.state.admin_name,
            },
        )
