"""Batch upload: ``POST /api/v1/files`` with 1 to 20 ``file`` parts, each streamed to storage as it arrives.

Litestar's own form parsing spools whole parts to temporary files first, so the body is parsed
here as a stream with ``multipart``'s push parser (already a Litestar dependency, and light: the
``streaming-form-data`` targets pull in ``smart_open`` and, where installed, boto3): the parser
turns each piece of the body into events (a part starts, bytes of it, it ends), and each ``file``
part is handed to ``FileService.receive`` as its own async byte stream while the request is still
arriving.
A text part named ``sha256`` (hex) before a file part is that file's expected checksum.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import msgspec
from litestar import Request, Response, post
from litestar.di import Provide
from litestar.params import Parameter
from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from app.auth import Principal
from app.errors import (
    RETRY_AFTER,
    STORAGE_UNAVAILABLE,
    RequestTimeout,
    ServiceError,
    Unprocessable,
    UnsupportedType,
)
from app.files.controller import provide_file_service
from app.files.naming import sanitize_filename
from app.files.schemas import FileRecord
from app.files.service import FileService, Incoming, check_sha256
from app.openapi import errors, response
from db.storage import StorageError

MAX_FILES = 20
MAX_FIELD_BYTES = 256


class BatchItem(msgspec.Struct, omit_defaults=True):
    filename: str
    status: str
    """``stored`` or ``failed``."""
    status_code: int
    """What a single-file upload of this part would have answered."""
    detail: str | None = None
    file: FileRecord | None = None


class BatchFailure(msgspec.Struct):
    original_name: str
    """The part's filename as stored names are made (control and bidi characters removed)."""
    error: str


class BatchResult(msgspec.Struct):
    status_code: int
    detail: str
    count: int
    """Files stored."""
    failure_count: int
    """Files that failed."""
    duration_ms: int
    results: list[BatchItem]
    batch_id: uuid.UUID | None = None
    """The batch the stored files' jobs belong to (``/api/v1/batches/{id}`` reads it); none without jobs."""
    # The shape clients of the parallel S3 uploader read, beside ``results``.
    success: bool = False
    """Every file was stored."""
    partial_success: bool = False
    """Some files were stored and some not."""
    files: list[FileRecord] = []
    """The stored files' records."""
    failures: list[BatchFailure] = []


@dataclass(frozen=True, slots=True)
class _Start:
    field: str
    filename: str | None


_END = object()
NOT_MULTIPART = "send multipart/form-data with 1 to 20 parts named 'file' (curl -F file=@a.csv -F file=@b.csv)"


class BatchService:
    def __init__(self, files: FileService) -> None:
        self.files = files

    async def receive(
        self, owner: Principal, content_type: str, body: AsyncIterator[bytes], *, process: bool
    ) -> BatchResult:
        started = time.perf_counter()
        results: list[BatchItem] = []
        self.files.batch_id = uuid.uuid4()
        try:
            await self._receive_parts(owner, content_type, body, process, results)
            if not results:
                raise ServiceError(f"send 1 to {MAX_FILES} parts named 'file' (curl -F file=@a.csv)")
        except ServiceError as exc:
            # A request refused as a whole keeps none of its files, and is shaped like every answer.
            await self._undo(owner, results)
            exc.extra |= {
                "count": 0,
                "failure_count": len(results),
                "duration_ms": _ms(started),
                "results": [],
                "success": False,
                "partial_success": False,
                "files": [],
                "failures": [{"original_name": r.filename, "error": r.detail or exc.detail} for r in results],
            }
            raise
        except Exception:
            # Nor does one that fails unexpectedly; the failed statement is rolled back first.
            await self.files.session.rollback()
            await self._undo(owner, results)
            raise
        summary = _summary(results, started)
        if any(r.file is not None and r.file.job_id is not None for r in results):
            summary.batch_id = self.files.batch_id
        return summary

    async def _receive_parts(
        self, owner: Principal, content_type: str, body: AsyncIterator[bytes], process: bool, results: list[BatchItem]
    ) -> None:
        kind, options = parse_options_header(content_type)
        if kind != "multipart/form-data" or not options.get("boundary"):
            raise UnsupportedType(NOT_MULTIPART)
        stream = _events(body, PushMultipartParser(options["boundary"]))
        expected_sha256: str | None = None
        async for event in stream:
            if not isinstance(event, _Start) or event.field not in ("file", "sha256"):
                continue
            if event.field == "sha256":
                expected_sha256 = await _field_value(stream)
                continue
            if len(results) == MAX_FILES:
                raise ServiceError(
                    f"send at most {MAX_FILES} files per request; none of this request's files were kept"
                )
            results.append(await self._one(owner, event.filename, _part(stream), expected_sha256, process))
            expected_sha256 = None

    async def _one(
        self, owner: Principal, filename: str | None, body: AsyncIterator[bytes], sha256: str | None, process: bool
    ) -> BatchItem:
        # The name shown back (and in ``detail``) is the stored one: no bidi override reverses it.
        name = sanitize_filename(filename or "upload")
        try:
            incoming = Incoming(filename=filename or name, body=body, sha256=check_sha256(sha256, "the sha256 field"), process=process)
            file = await self.files.receive(owner, incoming)
        except RequestTimeout:
            # The body stopped arriving, so no later part will: the request ends as a whole.
            raise
        except ServiceError as exc:
            return BatchItem(filename=name, status="failed", status_code=exc.status_code, detail=exc.detail)
        except StorageError:
            return BatchItem(filename=name, status="failed", status_code=503, detail=STORAGE_UNAVAILABLE)
        finally:
            # The next part starts only after this one's remaining bytes (if it failed early).
            async for _ in body:
                pass
        estimate = (await self.files.estimates([file], self.files.created_jobs)).get(file.id)
        record = FileRecord.of(file, self.files.created_jobs.get(file.id), estimate)
        return BatchItem(filename=name, status="stored", status_code=201, file=record)

    async def _undo(self, owner: Principal, results: list[BatchItem]) -> None:
        for item in results:
            if item.file is not None:
                await self.files.delete(owner, item.file.id)


async def _events(body: AsyncIterator[bytes], parser: PushMultipartParser) -> AsyncIterator[object]:
    """Parser output as events: ``_Start`` for a part's headers, its bytes, ``_END`` at its boundary."""
    try:
        async for data in body:
            if not data:
                continue  # an empty chunk would tell the parser the body ended; _part reports a cut body
            for event in parser.parse(data):
                if isinstance(event, MultipartSegment):
                    yield _Start(event.name, event.filename)
                else:
                    yield _END if event is None else event
    except MultipartError as exc:
        raise ServiceError(f"the multipart body could not be parsed ({exc}); send valid multipart/form-data") from exc


async def _part(stream: AsyncIterator[object]) -> AsyncIterator[bytes]:
    """The bytes of the current part, ending at its boundary."""
    async for event in stream:
        if event is _END:
            return
        if isinstance(event, bytes):
            yield event
    raise Unprocessable("the request body ended in the middle of a file; send the whole multipart body")


async def _field_value(stream: AsyncIterator[object]) -> str:
    value = bytearray()
    async for data in _part(stream):
        value += data
        if len(value) > MAX_FIELD_BYTES:
            raise ServiceError(f"a form field is longer than {MAX_FIELD_BYTES} bytes; sha256 is 64 hex characters")
    return value.decode("utf-8", errors="replace").strip()


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _summary(results: list[BatchItem], started: float) -> BatchResult:
    failures = [r for r in results if r.status != "stored"]
    codes = {r.status_code for r in failures}
    if not failures:
        status = 201
    elif len(failures) < len(results):
        status = 207
    elif len(codes) == 1:
        status = codes.pop()
    else:
        status = max(codes) if max(codes) >= 500 else 400
    stored = len(results) - len(failures)
    detail = f"{stored} of {len(results)} files stored"
    if failures:
        detail += "; " + "; ".join(f"{r.filename}: {r.detail}" for r in failures)
    return BatchResult(
        status_code=status,
        detail=detail,
        count=stored,
        failure_count=len(failures),
        duration_ms=_ms(started),
        results=results,
        success=not failures,
        partial_success=bool(failures) and stored > 0,
        files=[r.file for r in results if r.file is not None],
        failures=[BatchFailure(original_name=r.filename, error=r.detail or "") for r in failures],
    )


def provide_batch_service(files: FileService) -> BatchService:
    return BatchService(files)


# A handler, not a Controller: Litestar 2.25 refuses two Controllers on one path ("Handler already
# registered ... OPTIONS"); a plain handler registered after FileController merges into its route.
@post(
    "/api/v1/files",
    operation_id="uploadFiles",
    status_code=201,
    request_max_body_size=None,
    tags=["files"],
    dependencies={
        "files": Provide(provide_file_service, sync_to_thread=False),
        "batch": Provide(provide_batch_service, sync_to_thread=False),
    },
    summary="Upload 1 to 20 files as multipart/form-data parts named 'file'",
    description="201 when all were stored, 207 when some failed, the failures' status when none was stored.",
    responses={
        207: response(BatchResult, "Some files were stored, some not: each result says why"),
        **errors(408, 413, 415, 422, 503),
    },
)
async def upload_batch(
    request: Request,
    batch: BatchService,
    principal: Principal,
    process: Annotated[bool, Parameter(description="Process CSV/TSV/XLSX into tables once stored")] = True,
) -> Response[BatchResult]:
    result = await batch.receive(principal, request.headers.get("content-type", ""), request.stream(), process=process)
    headers = {"Retry-After": str(RETRY_AFTER)} if result.status_code == 503 else None
    return Response(result, status_code=result.status_code, headers=headers)
