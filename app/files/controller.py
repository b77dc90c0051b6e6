"""HTTP routes of the files domain: parse, call the service, shape the response."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated
from urllib.parse import quote

from litestar import Controller, Request, delete, get, put
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import Parameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import upload_memory
from app.errors import Unprocessable
from app.files.routing import decode_filename
from app.files.schemas import FilePage, FileRecord
from app.files.service import FileService, Incoming, check_sha256, served_type
from app.jobs.controller import provide_job_service
from app.openapi import errors
from app.params import Limit, Offset
from db.models import File, FileKind, FileStatus
from db.settings import Settings
from db.storage import ObjectStore

MAX_QUERY_CHARS = 200
"""A search longer than any sensible name costs a scan for nothing."""
NO_NUL = r"^[^\x00]*$"
"""PostgreSQL text cannot hold NUL: refused here (422) rather than by the database (500)."""


def provide_file_service(db_session: AsyncSession, store: ObjectStore, settings: Settings, state: State) -> FileService:
    jobs = provide_job_service(db_session, settings, state)
    return FileService(db_session, store, settings, jobs, memory=upload_memory(state, settings))


def content_response(file: File, chunks: Iterator[bytes]) -> Stream:
    """A file's stored bytes as a download, the same for a key and for a signed link."""
    disposition = f"attachment; filename*=UTF-8''{quote(file.filename)}"
    media_type, charset = served_type(file)
    return Stream(
        chunks,
        media_type=media_type,
        encoding=charset,
        headers={"Content-Disposition": disposition, "Content-Length": str(file.size)},
    )


class FileController(Controller):
    path = "/api/v1/files"
    tags = ["files"]
    dependencies = {"files": Provide(provide_file_service, sync_to_thread=False)}

    @put(
        "/{filename:str}",
        operation_id="uploadFile",
        status_code=201,
        request_max_body_size=None,
        summary="Upload one file as the raw request body (curl -T)",
        responses=errors(408, 409, 413, 415, 422, 503),
    )
    async def upload(
        self,
        request: Request,
        files: FileService,
        principal: Principal,
        filename: str,
        process: Annotated[bool, Parameter(description="Process CSV/TSV/XLSX into a table once stored")] = True,
        sha256: Annotated[str | None, Parameter(header="X-Content-SHA256", required=False)] = None,
    ) -> FileRecord:
        declared = request.headers.get("content-length")
        if declared is not None and not declared.isdigit():
            raise Unprocessable("Content-Length must be a whole number of bytes")
        incoming = Incoming(
            filename=decode_filename(filename),
            body=request.stream(),
            declared_size=int(declared) if declared is not None else None,
            sha256=check_sha256(sha256, "X-Content-SHA256"),
            process=process,
        )
        file = await files.receive(principal, incoming)
        estimates = await files.estimates([file], files.created_jobs)
        return FileRecord.of(file, files.created_jobs.get(file.id), estimates.get(file.id))

    @get("/", operation_id="listFiles", summary="List files, newest first", responses=errors(422))
    async def list_files(
        self,
        files: FileService,
        principal: Principal,
        offset: Offset = 0,
        limit: Limit = 50,
        status: Annotated[FileStatus | None, Parameter(description="only files in this status (default: all but deleted)")] = None,
        kind: Annotated[FileKind | None, Parameter(description="only files of this kind")] = None,
        q: Annotated[
            str | None,
            Parameter(
                max_length=MAX_QUERY_CHARS,
                pattern=NO_NUL,
                description=f"only files whose name or original name contains this text, any case, taken literally (at most {MAX_QUERY_CHARS} characters, no NUL)",
            ),
        ] = None,
    ) -> FilePage:
        items, total = await files.list(principal, offset=offset, limit=limit, status=status, kind=kind, q=q)
        jobs = await files.latest_jobs(items)
        estimates = await files.estimates(items, jobs)
        records = [FileRecord.of(f, jobs.get(f.id), estimates.get(f.id)) for f in items]
        return FilePage(items=records, total=total, offset=offset, limit=limit)

    @get("/{file_id:uuid}", operation_id="getFile", responses=errors(404))
    async def get_file(self, files: FileService, principal: Principal, file_id: uuid.UUID) -> FileRecord:
        file = await files.get(principal, file_id)
        jobs = await files.latest_jobs([file])
        return FileRecord.of(file, jobs.get(file.id), (await files.estimates([file], jobs)).get(file.id))

    @get(
        "/{file_id:uuid}/content",
        operation_id="getFileContent",
        summary="Stream the stored bytes back",
        responses=errors(404, 409, 410, 503),
    )
    async def get_content(self, files: FileService, principal: Principal, file_id: uuid.UUID) -> Stream:
        return content_response(*await files.open_content(principal, file_id))

    @delete("/{file_id:uuid}", operation_id="deleteFile", status_code=204, responses=errors(404, 503))
    async def delete_file(self, files: FileService, principal: Principal, file_id: uuid.UUID) -> None:
        await files.delete(principal, file_id)
