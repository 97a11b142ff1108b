"""Admin HTTP API of the personnel service."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.params import Parameter

from services.personnel import personnel_number, repository
from shared.admin_api import AdminRequest
from shared.admin_auth import admin_guard

logger = logging.getLogger(__name__)

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Number = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class PersonCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    personnel_number: Number
    name: Name


class PersonUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None
    active: bool | None = None


def _number(raw: str) -> str:
    try:
        return personnel_number.normalise(raw)
    except personnel_number.InvalidPersonnelNumber as exc:
        raise ValidationException(
            detail=f"invalid personnel_number: {exc}",
            extra=[{"key": "personnel_number", "message": str(exc)}],
        ) from None


class PersonnelController(Controller):
    path = "/admin/tenants/{tenant_id:uuid}/people"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["personnel"]  # noqa: RUF012

    @post("/", operation_id="CreatePerson")
    async def create_person(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: PersonCreate,
    ) -> repository.PersonRecord:
        person = await repository.create_person(
            state.pool,
            tenant_id,
            _number(data.personnel_number),
            personnel_number.normalise_name(data.name),
        )
        logger.info(
            "person created",
            extra={
                "event": "person_created",
                "tenant_id": str(tenant_id),
                "person_id": str(person.id),
                "admin": request.state.admin_name,
            },
        )
        return person

    @get("/", operation_id="ListPeople")
    async def list_people(
        self,
        state: State,
        tenant_id: uuid.UUID,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: Annotated[
            str | None,
            Parameter(description="personnel number to continue after (keyset)"),
        ] = None,
    ) -> list[repository.PersonRecord]:
        return await repository.list_people(
            state.pool, tenant_id, limit=limit, after=after
        )

    @get("/{number:str}", operation_id="GetPerson")
    async def get_person(
        self, state: State, tenant_id: uuid.UUID, number: str
    ) -> repository.PersonRecord:
        return await repository.get_person(state.pool, tenant_id, _number(number))

    @patch("/{number:str}", operation_id="UpdatePerson")
    async def update_person(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        number: str,
        data: PersonUpdate,
    ) -> repository.PersonRecord:
        person = await repository.update_person(
            state.pool,
            tenant_id,
            _number(number),
            name=None
            if data.name is None
            else personnel_number.normalise_name(data.name),
            active=data.active,
        )
        logger.info(
            "person updated",
            extra={
                "event": "person_updated",
                "tenant_id": str(tenant_id),
                "person_id": str(person.id),
                "active": person.active,
                "admin": request.state.admin_name,
            },
        )
        return person
