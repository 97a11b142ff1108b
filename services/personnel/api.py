"""Admin HTTP API of the personnel service.

A person is addressed either by path, `/people/{number}`, or by query,
`/person?number=…`. The query form works for every number, including
numbers with `/` (such as `00/47`), which a path segment cannot carry, and
numbers that equal a fixed path such as `import`.

Each committed change is announced as a `PersonChanged` event, so that
gateways drop what they cached for that person, or for all of the tenant's
people after an import.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, patch, post
from litestar.datastructures import State
from litestar.exceptions import ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from services.personnel import csv_import, personnel_number, repository, tenants
from shared import directory_events, text
from shared.admin_api import AdminRequest, log_admin_action
from shared.admin_auth import admin_guard

logger = logging.getLogger(__name__)

MAX_IMPORT_BYTES = 10 * 1024 * 1024
"""Largest accepted CSV file; 100,000 people take about 4 MiB."""

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Number = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
NumberQuery = Annotated[
    str,
    Parameter(
        query="number",
        description="personnel number, percent-encoded (`00/47` as `00%2F47`)",
    ),
]


class PersonCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    personnel_number: Number
    name: Name


class PersonUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | None = None
    active: bool | None = None


class ImportCounts(msgspec.Struct, kw_only=True):
    added: int
    updated: int
    deactivated: int
    unchanged: int


class ImportReport(msgspec.Struct, kw_only=True):
    """Report of an import: the personnel numbers it added, updated,
    deactivated or left unchanged (with `dry_run`, would have)."""

    dry_run: bool
    encoding: str
    delimiter: str
    counts: ImportCounts
    added: list[str]
    updated: list[str]
    deactivated: list[str]
    unchanged: list[str]
    ignored_columns: list[str]


class ImportProblem(msgspec.Struct, kw_only=True):
    line: int | None
    """Line in the file, 1 being the header; null for the file as a whole."""
    column: str | None
    message: str


class ImportRejection(msgspec.Struct, kw_only=True):
    """Body of a 422 response: the file was not applied, for these reasons."""

    status_code: int
    detail: str
    error_count: int
    errors: list[ImportProblem]
    """Every problem, up to the first 1000."""


def _number(raw: str) -> str:
    try:
        return personnel_number.normalise(raw)
    except personnel_number.InvalidPersonnelNumber as exc:
        raise ValidationException(
            detail=f"invalid personnel_number {raw!r}: {exc}",
            extra=[{"key": "personnel_number", "message": str(exc)}],
        ) from None


def _name(raw: str) -> str:
    name = personnel_number.normalise_name(raw)
    if not name:
        raise ValidationException(
            detail=f"invalid name {raw!r}: the name is blank; send the person's name",
            extra=[{"key": "name", "message": "blank"}],
        )
    if text.has_control_character(name):
        raise ValidationException(
            detail=f"invalid name {raw!r}: the name contains a control character",
            extra=[{"key": "name", "message": "control character"}],
        )
    return name


async def _announce(
    state: State,
    tenant_id: uuid.UUID,
    change: directory_events.PersonChange,
    *,
    number: str | None,
    count: int = 1,
) -> None:
    await directory_events.publish(
        state.nc,
        directory_events.PersonChanged(
            tenant_id=str(tenant_id),
            change=change,
            personnel_number=number,
            count=count,
            changed_at=directory_events.now(),
        ),
    )


async def _update(
    state: State,
    request: AdminRequest,
    tenant_id: uuid.UUID,
    raw_number: str,
    *,
    name: str | None,
    active: bool | None,
) -> repository.PersonRecord:
    updated = await repository.update_person(
        state.pool,
        tenant_id,
        _number(raw_number),
        name=None if name is None else _name(name),
        active=active,
    )
    person = updated.person
    if not updated.changed:
        return person
    change: directory_events.PersonChange = "updated"
    if updated.changed == ["active"]:
        change = "reactivated" if person.active else "deactivated"
    log_admin_action(
        f"person {change}",
        f"person_{change}",
        request,
        tenant_id=tenant_id,
        person_id=person.id,
        fields=",".join(updated.changed),
    )
    await _announce(state, tenant_id, change, number=person.personnel_number)
    return person


class PersonnelController(Controller):
    path = "/admin/tenants/{tenant_id:uuid}"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["personnel"]  # noqa: RUF012

    @post("/people", operation_id="CreatePerson")
    async def create_person(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: PersonCreate,
    ) -> repository.PersonRecord:
        number = _number(data.personnel_number)
        name = _name(data.name)
        await tenants.require_tenant(state.nc, tenant_id)
        person = await repository.create_person(state.pool, tenant_id, number, name)
        log_admin_action(
            "person created",
            "person_created",
            request,
            tenant_id=tenant_id,
            person_id=person.id,
        )
        await _announce(state, tenant_id, "created", number=number)
        return person

    @get("/people", operation_id="ListPeople")
    async def list_people(
        self,
        state: State,
        tenant_id: uuid.UUID,
        limit: Annotated[int, Parameter(ge=1, le=1000)] = 100,
        after: Annotated[
            str | None,
            Parameter(
                description="continue after this personnel number: the last "
                "number of the previous page (keyset pagination)"
            ),
        ] = None,
        q: Annotated[
            str | None,
            Parameter(
                description="keep people whose number starts with this text or "
                "whose name contains it, ignoring case",
                max_length=200,
            ),
        ] = None,
    ) -> list[repository.PersonRecord]:
        """List people ordered by personnel number, `limit` at a time."""
        query = personnel_number.normalise_name(q) if q else None
        return await repository.list_people(
            state.pool, tenant_id, limit=limit, after=after, query=query or None
        )

    # --- one person by path: numbers without `/` ----------------------------

    @get("/people/{number:str}", operation_id="GetPerson")
    async def get_person(
        self, state: State, tenant_id: uuid.UUID, number: str
    ) -> repository.PersonRecord:
        return await repository.get_person(state.pool, tenant_id, _number(number))

    @patch("/people/{number:str}", operation_id="UpdatePerson")
    async def update_person(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        number: str,
        data: PersonUpdate,
    ) -> repository.PersonRecord:
        return await _update(
            state, request, tenant_id, number, name=data.name, active=data.active
        )

    @post(
        "/people/{number:str}/deactivate",
        operation_id="DeactivatePerson",
        status_code=200,
    )
    async def deactivate_person(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID, number: str
    ) -> repository.PersonRecord:
        """Deactivate a person: their link stops opening the form."""
        return await _update(state, request, tenant_id, number, name=None, active=False)

    @post(
        "/people/{number:str}/reactivate",
        operation_id="ReactivatePerson",
        status_code=200,
    )
    async def reactivate_person(
        self, state: State, request: AdminRequest, tenant_id: uuid.UUID, number: str
    ) -> repository.PersonRecord:
        return await _update(state, request, tenant_id, number, name=None, active=True)

    # --- one person by query: any number ------------------------------------

    @get("/person", operation_id="GetPersonByQuery")
    async def get_person_by_query(
        self, state: State, tenant_id: uuid.UUID, number: NumberQuery
    ) -> repository.PersonRecord:
        return await repository.get_person(state.pool, tenant_id, _number(number))

    @patch("/person", operation_id="UpdatePersonByQuery")
    async def update_person_by_query(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        number: NumberQuery,
        data: PersonUpdate,
    ) -> repository.PersonRecord:
        return await _update(
            state, request, tenant_id, number, name=data.name, active=data.active
        )

    @post(
        "/person/deactivate",
        operation_id="DeactivatePersonByQuery",
        status_code=200,
    )
    async def deactivate_person_by_query(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        number: NumberQuery,
    ) -> repository.PersonRecord:
        return await _update(state, request, tenant_id, number, name=None, active=False)

    @post(
        "/person/reactivate",
        operation_id="ReactivatePersonByQuery",
        status_code=200,
    )
    async def reactivate_person_by_query(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        number: NumberQuery,
    ) -> repository.PersonRecord:
        return await _update(state, request, tenant_id, number, name=None, active=True)

    # --- CSV import ----------------------------------------------------------

    @post(
        "/people/import",
        operation_id="ImportPeople",
        status_code=200,
        request_max_body_size=MAX_IMPORT_BYTES,
        responses={
            422: ResponseSpec(
                data_container=ImportRejection,
                description="The file has errors; nothing was applied.",
            )
        },
    )
    async def import_people(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        dry_run: bool = False,
        encoding: csv_import.Encoding = "utf-8",
        delimiter: csv_import.Delimiter = "auto",
        deactivate_missing: Annotated[
            bool,
            Parameter(
                description="deactivate the tenant's active people whom the "
                "file does not list"
            ),
        ] = False,
    ) -> Response[ImportReport | ImportRejection]:
        """Import a CSV personnel list, sent as the raw request body.

        The whole file is checked first; a file with any error is rejected
        with status 422 and every error, and nothing is applied. Otherwise
        all changes are applied in one transaction, or with `dry_run` only
        reported.
        """
        body = await request.body()
        try:
            parsed = csv_import.parse(body, encoding=encoding, delimiter=delimiter)
        except csv_import.InvalidFile as exc:
            return _rejected(request, tenant_id, exc)
        await tenants.require_tenant(state.nc, tenant_id)
        plan = await repository.import_people(
            state.pool,
            tenant_id,
            parsed.rows,
            deactivate_missing=deactivate_missing,
            dry_run=dry_run,
        )
        report = _report(plan, parsed, dry_run=dry_run)
        changed = report.counts.added + report.counts.updated
        changed += report.counts.deactivated
        log_admin_action(
            "people imported" if not dry_run else "people import checked",
            "people_imported" if not dry_run else "people_import_dry_run",
            request,
            tenant_id=tenant_id,
            rows=len(parsed.rows),
            added=report.counts.added,
            updated=report.counts.updated,
            deactivated=report.counts.deactivated,
        )
        if changed and not dry_run:
            await _announce(state, tenant_id, "imported", number=None, count=changed)
        return Response(report, status_code=200)


def _report(
    plan: repository.ImportPlan, parsed: csv_import.ParsedFile, *, dry_run: bool
) -> ImportReport:
    return ImportReport(
        dry_run=dry_run,
        encoding=parsed.encoding,
        delimiter=parsed.delimiter,
        counts=ImportCounts(
            added=len(plan.added),
            updated=len(plan.updated),
            deactivated=len(plan.deactivated),
            unchanged=len(plan.unchanged),
        ),
        added=plan.added,
        updated=plan.updated,
        deactivated=plan.deactivated,
        unchanged=plan.unchanged,
        ignored_columns=parsed.ignored_columns,
    )


def _rejected(
    request: AdminRequest, tenant_id: uuid.UUID, exc: csv_import.InvalidFile
) -> Response[ImportReport | ImportRejection]:
    log_admin_action(
        "people import rejected",
        "people_import_rejected",
        request,
        tenant_id=tenant_id,
        errors=exc.total,
    )
    shown = "; ".join(
        (f"line {p.line}: " if p.line is not None else "") + p.message
        for p in exc.problems[:3]
    )
    more = f" (and {exc.total - 3} more)" if exc.total > 3 else ""
    return Response(
        ImportRejection(
            status_code=422,
            detail=f"file rejected with {exc.total} error(s), nothing was applied: "
            f"{shown}{more}",
            error_count=exc.total,
            errors=[
                ImportProblem(line=p.line, column=p.column, message=p.message)
                for p in exc.problems
            ],
        ),
        status_code=422,
    )
