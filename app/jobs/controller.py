"""HTTP routes of the jobs domain: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.jobs.schemas import BatchRecord, JobPage, JobRecord, JobsIn, RejectPage, RejectRecord
from app.jobs.service import JobService
from app.openapi import errors
from app.params import Limit, Offset
from db.models import JobState
from db.settings import Settings


def provide_job_service(db_session: AsyncSession, settings: Settings, state: State) -> JobService:
    return JobService(db_session, settings, state.resources.broker, state.resources.redis)


class JobController(Controller):
    path = "/api/v1/jobs"
    tags = ["jobs"]
    dependencies = {"jobs": Provide(provide_job_service, sync_to_thread=False)}

    @post(
        "/",
        operation_id="createJobs",
        status_code=201,
        summary="(Re)process stored files as one batch",
        responses=errors(404, 409, 422),
    )
    async def create(self, jobs: JobService, principal: Principal, data: JobsIn) -> BatchRecord:
        batch_id, created = await jobs.submit(principal, data)
        estimates = await jobs.estimates(created)
        return BatchRecord(batch_id=batch_id, jobs=[JobRecord.of(j, estimates.get(j.id)) for j in created])

    @get("/", operation_id="listJobs", summary="List jobs, newest first", responses=errors(422))
    async def list_jobs(
        self,
        jobs: JobService,
        principal: Principal,
        offset: Offset = 0,
        limit: Limit = 50,
        job_state: Annotated[JobState | None, Parameter(query="state", description="only jobs in this state")] = None,
        batch_id: Annotated[uuid.UUID | None, Parameter(description="only the jobs of this batch")] = None,
        file_id: Annotated[uuid.UUID | None, Parameter(description="only the jobs of this file")] = None,
    ) -> JobPage:
        items, total = await jobs.list(
            principal, offset=offset, limit=limit, state=job_state, batch_id=batch_id, file_id=file_id
        )
        estimates = await jobs.estimates(items)
        return JobPage(items=[JobRecord.of(j, estimates.get(j.id)) for j in items], total=total, offset=offset, limit=limit)

    @get("/{job_id:uuid}", operation_id="getJob", responses=errors(404))
    async def get_job(self, jobs: JobService, principal: Principal, job_id: uuid.UUID) -> JobRecord:
        job = await jobs.get(principal, job_id)
        return JobRecord.of(job, (await jobs.estimates([job])).get(job.id))

    @post(
        "/{job_id:uuid}/cancel",
        operation_id="cancelJob",
        status_code=202,
        summary="Cancel a pending or running job",
        responses=errors(404, 409),
    )
    async def cancel(self, jobs: JobService, principal: Principal, job_id: uuid.UUID) -> JobRecord:
        return JobRecord.of(await jobs.cancel(principal, job_id))

    @get(
        "/{job_id:uuid}/rejects",
        operation_id="listJobRejects",
        summary="Rows that could not be stored, and why",
        responses=errors(404, 422),
    )
    async def rejects(
        self,
        jobs: JobService,
        principal: Principal,
        job_id: uuid.UUID,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> RejectPage:
        items, total = await jobs.rejects(principal, job_id, offset=offset, limit=limit)
        return RejectPage(
            job_id=job_id,
            items=[RejectRecord(row_number=r.row_number, reason=r.reason, raw=r.raw) for r in items],
            total=total,
            offset=offset,
            limit=limit,
        )
