"""HTTP routes for admin keys (``sluice keys create NAME --admin``); any other key gets 403."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import BaseRouteHandler
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.metrics import RANGE_PATTERN, MetricsService
from app.admin.schemas import ActiveUploadPage, Metrics, OwnerStoragePage, Stats
from app.admin.service import AdminService
from app.auth import Principal
from app.jobs.controller import provide_job_service
from app.jobs.schemas import JobRecord
from app.jobs.service import JobService
from app.openapi import errors
from app.params import Limit, Offset
from app.tus.controller import provide_tus_service
from app.tus.service import TusService
from app.uploads.controller import provide_upload_service
from app.uploads.schemas import SessionRecord
from app.uploads.service import UploadService
from db.storage import ObjectStore


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if not connection.user.is_admin:
        raise PermissionDeniedException("this route needs an admin key: sluice keys create NAME --admin")


def provide_admin_service(db_session: AsyncSession, store: ObjectStore) -> AdminService:
    return AdminService(db_session, store)


def provide_metrics_service(db_session: AsyncSession, state: State) -> MetricsService:
    return MetricsService(db_session, state.resources)


class AdminController(Controller):
    path = "/api/v1/admin"
    tags = ["admin"]
    guards = [admin_only]
    dependencies = {
        "admin": Provide(provide_admin_service, sync_to_thread=False),
        "dashboard": Provide(provide_metrics_service, sync_to_thread=False),
        "jobs": Provide(provide_job_service, sync_to_thread=False),
        "uploads": Provide(provide_upload_service, sync_to_thread=False),
        "tus": Provide(provide_tus_service, sync_to_thread=False),
    }

    @get(
        "/stats",
        operation_id="adminStats",
        summary="Files, jobs, sessions and storage of every owner",
        responses=errors(403, 503),
    )
    async def stats(self, admin: AdminService) -> Stats:
        return await admin.stats()

    @get(
        "/metrics",
        operation_id="adminMetrics",
        summary="The operations dashboard: cards, an hourly series over the range, health of each dependency",
        responses=errors(403, 422, 503),
    )
    async def metrics(
        self,
        dashboard: MetricsService,
        range: Annotated[  # noqa: A002 - the contract's name for it
            str,
            Parameter(pattern=RANGE_PATTERN, description="How far back the series and the range's cards go: 24h, 7d or 30d"),
        ] = "24h",
    ) -> Metrics:
        return await dashboard.metrics(range)

    @get(
        "/uploads",
        operation_id="adminActiveUploads",
        summary="Chunked sessions still receiving, of every owner",
        responses=errors(403, 422),
    )
    async def uploads(
        self,
        admin: AdminService,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> ActiveUploadPage:
        items, total = await admin.active_uploads(offset=offset, limit=limit)
        return ActiveUploadPage(items=items, total=total, offset=offset, limit=limit)

    @post(
        "/uploads/{upload_id:uuid}/cancel",
        operation_id="adminCancelUpload",
        status_code=200,
        summary="Abort any owner's receiving upload session (chunked or tus) and release its storage",
        responses=errors(403, 404, 409),
    )
    async def cancel_upload(
        self, admin: AdminService, uploads: UploadService, tus: TusService, principal: Principal, upload_id: uuid.UUID
    ) -> SessionRecord:
        return await admin.cancel_upload(principal, uploads, tus, upload_id)

    @get(
        "/storage",
        operation_id="adminStorage",
        summary="Storage of each owner: stored bytes, live sessions, incomplete multipart uploads",
        responses=errors(403, 422, 503),
    )
    async def storage(
        self,
        admin: AdminService,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> OwnerStoragePage:
        items, total = await admin.storage(offset=offset, limit=limit)
        return OwnerStoragePage(items=items, total=total, offset=offset, limit=limit)

    @post(
        "/jobs/{job_id:uuid}/cancel",
        operation_id="adminCancelJob",
        status_code=202,
        summary="Cancel any owner's job",
        responses=errors(403, 404, 409),
    )
    async def cancel(self, jobs: JobService, job_id: uuid.UUID) -> JobRecord:
        return JobRecord.of(await jobs.cancel_any(job_id))
