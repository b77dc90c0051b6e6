"""HTTP routes of batches: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.batches.schemas import BatchDetail, BatchPage
from app.batches.service import BatchService
from app.jobs.service import JobService
from app.openapi import errors
from app.params import Limit, Offset
from db.settings import Settings


def provide_batch_service(db_session: AsyncSession, settings: Settings, state: State) -> BatchService:
    jobs = JobService(db_session, settings, state.resources.broker, state.resources.redis)
    return BatchService(db_session, jobs)


BatchId = Annotated[uuid.UUID, Parameter(description="The batch_id of POST /api/v1/jobs, of a multi-file upload or of a job")]


class BatchController(Controller):
    path = "/api/v1/batches"
    tags = ["batches"]
    dependencies = {"batches": Provide(provide_batch_service, sync_to_thread=False)}

    @get("/", operation_id="listBatches", summary="List batches, newest first", responses=errors(422))
    async def list_batches(
        self,
        batches: BatchService,
        principal: Principal,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> BatchPage:
        items, total = await batches.list(principal, offset=offset, limit=limit)
        return BatchPage(items=items, total=total, offset=offset, limit=limit)

    @get("/{batch_id:uuid}", operation_id="getBatch", summary="A batch and each of its jobs", responses=errors(404))
    async def get_batch(self, batches: BatchService, principal: Principal, batch_id: BatchId) -> BatchDetail:
        return await batches.get(principal, batch_id)

    @post(
        "/{batch_id:uuid}/cancel",
        operation_id="cancelBatch",
        status_code=202,
        summary="Cancel every job of a batch that has not finished",
        responses=errors(404, 409),
    )
    async def cancel(self, batches: BatchService, principal: Principal, batch_id: BatchId) -> BatchDetail:
        return await batches.cancel(principal, batch_id)
