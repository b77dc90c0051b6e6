"""HTTP routes of chunked, resumable uploads: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, Request, delete, get, post, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import upload_memory
from app.errors import Unprocessable
from app.files.service import check_sha256
from app.jobs.service import JobService
from app.openapi import errors
from app.uploads.schemas import ChunkRecord, CompletedUpload, SessionIn, SessionRecord
from app.uploads.service import UploadService
from db.settings import Settings
from db.storage import ObjectStore


def provide_upload_service(
    db_session: AsyncSession, store: ObjectStore, settings: Settings, state: State
) -> UploadService:
    resources = state.resources
    jobs = JobService(db_session, settings, resources.broker, resources.redis)
    return UploadService(db_session, store, settings, resources.redis, jobs, upload_memory(state, settings))


UploadId = Annotated[uuid.UUID, Parameter(description="The id POST /api/v1/uploads answered")]


class UploadController(Controller):
    path = "/api/v1/uploads"
    tags = ["uploads"]
    dependencies = {"uploads": Provide(provide_upload_service, sync_to_thread=False)}

    @post(
        "/",
        operation_id="createUpload",
        status_code=201,
        summary="Start a chunked, resumable upload",
        responses=errors(413, 422, 503),
    )
    async def create(self, uploads: UploadService, principal: Principal, data: SessionIn) -> SessionRecord:
        return await uploads.create(principal, data)

    @put(
        "/{upload_id:uuid}/chunks/{index:int}",
        operation_id="putUploadChunk",
        request_max_body_size=None,
        summary="Send one chunk (raw body); a repeat replaces it",
        responses=errors(404, 408, 409, 410, 415, 422, 503),
    )
    async def put_chunk(
        self,
        request: Request,
        uploads: UploadService,
        principal: Principal,
        upload_id: UploadId,
        index: Annotated[int, Parameter(description="0-based chunk index")],
        sha256: Annotated[str | None, Parameter(header="X-Chunk-SHA256", required=False)] = None,
    ) -> ChunkRecord:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise Unprocessable("Content-Length must be a whole number of bytes")
        return await uploads.put_chunk(
            principal,
            upload_id,
            index,
            request.stream(),
            int(declared) if declared is not None else None,
            check_sha256(sha256, "X-Chunk-SHA256"),
        )

    @get(
        "/{upload_id:uuid}",
        operation_id="getUpload",
        summary="State, received and missing chunks",
        responses=errors(404),
    )
    async def get_upload(self, uploads: UploadService, principal: Principal, upload_id: UploadId) -> SessionRecord:
        return await uploads.get(principal, upload_id)

    @post(
        "/{upload_id:uuid}/complete",
        operation_id="completeUpload",
        status_code=200,
        summary="Assemble the chunks inside the object store and create the file",
        responses=errors(404, 409, 410, 415, 422, 503),
    )
    async def complete(self, uploads: UploadService, principal: Principal, upload_id: UploadId) -> CompletedUpload:
        return await uploads.complete(principal, upload_id)

    @delete(
        "/{upload_id:uuid}",
        operation_id="abortUpload",
        status_code=204,
        summary="Abort and release storage",
        responses=errors(404, 409, 503),
    )
    async def abort(self, uploads: UploadService, principal: Principal, upload_id: UploadId) -> None:
        await uploads.abort(principal, upload_id)
