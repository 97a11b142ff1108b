"""Admin HTTP API of the tenant service."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

import asyncpg
import msgspec
from litestar import Controller, get, patch, post
from litestar.datastructures import State

from services.tenant import link_secret, repository
from shared.admin_api import AdminRequest, NotFound
from shared.admin_auth import admin_guard

logger = logging.getLogger(__name__)

Language = Annotated[str, msgspec.Meta(pattern="^(de|en|fr|it)$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Category = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
Categories = Annotated[list[Category], msgspec.Meta(min_length=1, max_length=50)]


class TenantCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name
    language: Language = "de"
    categories: Categories = msgspec.field(
        default_factory=lambda: ["IT", "Gebäude", "Sonstiges"]
    )
    intake_enabled: bool = False


class TenantUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    language: Language | msgspec.UnsetType = msgspec.UNSET
    categories: Categories | msgspec.UnsetType = msgspec.UNSET
    intake_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class IssuedSecret(msgspec.Struct, kw_only=True):
    """A new link secret. `secret` is shown in this response only."""

    secret: str
    info: repository.SecretInfo


class TenantController(Controller):
    path = "/admin/tenants"
    guards = [admin_guard]  # noqa: RUF012
    tags = ["tenants"]  # noqa: RUF012

    @post("/", operation_id="CreateTenant")
    async def create_tenant(
        self,
        state: State,
        request: AdminRequest,
        data: TenantCreate,
    ) -> repository.Tenant:
        pool: asyncpg.Pool = state.pool
        tenant = await repository.create_tenant(
            pool,
            name=data.name,
            language=data.language,
            categories=data.categories,
            intake_enabled=data.intake_enabled,
        )
        logger.info(
            "tenant created",
            extra={
                "event": "tenant_created",
                "tenant_id": str(tenant.id),
                "admin": request.state.admin_name,
            },
        )
        return tenant

    @get("/", operation_id="ListTenants")
    async def list_tenants(self, state: State) -> list[repository.Tenant]:
        return await repository.list_tenants(state.pool)

    @get("/{tenant_id:uuid}", operation_id="GetTenant")
    async def get_tenant(self, state: State, tenant_id: uuid.UUID) -> repository.Tenant:
        return await repository.get_tenant(state.pool, tenant_id)

    @patch("/{tenant_id:uuid}", operation_id="UpdateTenant")
    async def update_tenant(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        data: TenantUpdate,
    ) -> repository.Tenant:
        changes = {
            field: getattr(data, field)
            for field in data.__struct_fields__
            if getattr(data, field) is not msgspec.UNSET
        }
        tenant = await repository.update_tenant(state.pool, tenant_id, changes)
        logger.info(
            "tenant updated",
            extra={
                "event": "tenant_updated",
                "tenant_id": str(tenant_id),
                "fields": ",".join(sorted(changes)),
                "admin": request.state.admin_name,
            },
        )
        return tenant

    @post("/{tenant_id:uuid}/secrets", operation_id="IssueSecret")
    async def issue_secret(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
    ) -> IssuedSecret:
        secret = link_secret.generate()
        info = await repository.add_secret(state.pool, tenant_id, secret)
        logger.info(
            "link secret issued",
            extra={
                "event": "secret_issued",
                "tenant_id": str(tenant_id),
                "secret_id": str(info.id),
                "admin": request.state.admin_name,
            },
        )
        return IssuedSecret(secret=secret, info=info)

    @get("/{tenant_id:uuid}/secrets", operation_id="ListSecrets")
    async def list_secrets(
        self, state: State, tenant_id: uuid.UUID
    ) -> list[repository.SecretInfo]:
        return await repository.list_secrets(state.pool, tenant_id)

    @post(
        "/{tenant_id:uuid}/secrets/{secret_id:uuid}/revoke",
        operation_id="RevokeSecret",
        status_code=200,
    )
    async def revoke_secret(
        self,
        state: State,
        request: AdminRequest,
        tenant_id: uuid.UUID,
        secret_id: uuid.UUID,
    ) -> repository.SecretInfo:
        info = await repository.revoke_secret(state.pool, tenant_id, secret_id)
        if info is None:
            msg = f"secret {secret_id} not found for tenant {tenant_id}"
            raise NotFound(msg)
        logger.info(
            "link secret revoked",
            extra={
                "event": "secret_revoked",
                "tenant_id": str(tenant_id),
                "secret_id": str(secret_id),
                "admin": request.state.admin_name,
            },
        )
        return info
