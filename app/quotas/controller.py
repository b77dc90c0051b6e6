"""Admin routes for an owner's quotas (``sluice owners quota`` does the same)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, put
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.controller import admin_only
from app.openapi import errors
from app.quotas.schemas import OwnerQuotaIn, OwnerQuotaRecord, OwnLimits, QuotaUses
from app.quotas.service import QuotaService
from db.settings import Settings


def provide_quota_service(db_session: AsyncSession, settings: Settings) -> QuotaService:
    return QuotaService(db_session, settings)


async def owner_quota(quotas: QuotaService, owner_id: uuid.UUID) -> OwnerQuotaRecord:
    own = await quotas.own(owner_id)
    return OwnerQuotaRecord(owner_id=owner_id, own=OwnLimits(**own), quotas=QuotaUses.of(await quotas.usage(owner_id)))


class QuotaController(Controller):
    path = "/api/v1/admin/owners/{owner_id:uuid}/quota"
    tags = ["admin"]
    guards = [admin_only]
    dependencies = {"quotas": Provide(provide_quota_service, sync_to_thread=False)}

    @get("/", operation_id="adminGetQuota", summary="An owner's quotas and use", responses=errors(403, 404, 422))
    async def get_quota(self, quotas: QuotaService, owner_id: uuid.UUID) -> OwnerQuotaRecord:
        return await owner_quota(quotas, owner_id)

    @put(
        "/",
        operation_id="adminSetQuota",
        summary="Set an owner's quotas (fields left out keep theirs; null: the default)",
        responses=errors(400, 403, 404, 422),
    )
    async def set_quota(self, quotas: QuotaService, owner_id: uuid.UUID, data: OwnerQuotaIn) -> OwnerQuotaRecord:
        await quotas.set(owner_id, data.given())
        return await owner_quota(quotas, owner_id)
