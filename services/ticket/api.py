"""Admin HTTP API of the ticket service."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import Parameter

from services.ticket import repository
from shared.admin_auth import admin_guard


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
            Parameter(ge=1, description="ticket id to continue below (keyset)"),
        ] = None,
    ) -> list[repository.Ticket]:
        """List a tenant's tickets, newest first."""
        return await repository.list_tickets(
            state.pool, tenant_id, limit=limit, before=before
        )

    @get("/parked-messages", operation_id="ListParkedMessages")
    async def list_parked(
        self,
        state: State,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> list[repository.ParkedMessage]:
        """List messages the consumer could not store, oldest first."""
        return await repository.list_parked(state.pool, limit=limit)
