"""Decide whether a personnel number names an active person of a tenant."""

from __future__ import annotations

import uuid

import asyncpg

from services.personnel import personnel_number, repository
from shared import messages


async def resolve_person(
    pool: asyncpg.Pool, request: messages.ResolvePerson
) -> messages.PersonResolved:
    """Return the active person with that number in that tenant, or the reason
    there is none."""
    try:
        tenant_id = uuid.UUID(request.tenant_id)
        number = personnel_number.normalise(request.personnel_number)
    except (ValueError, personnel_number.InvalidPersonnelNumber):
        return messages.PersonResolved(reason="unknown_person")
    person = await repository.find_person(pool, tenant_id, number)
    if person is None:
        return messages.PersonResolved(reason="unknown_person")
    if not person.active:
        return messages.PersonResolved(reason="inactive_person")
    return messages.PersonResolved(
        person=messages.Person(
            personnel_number=person.personnel_number, display_name=person.name
        )
    )
