"""Files: streaming a body into the object store, and reading, listing and deleting records."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from anyio import to_thread
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import UploadMemory
from app.errors import Conflict, Gone, NotFound, PayloadTooLarge, RequestTimeout, Unprocessable, UnsupportedType
from app.files.detect import (
    ACCEPTED,
    CONTENT_TYPES,
    HEAD_BYTES,
    TAIL_BYTES,
    charset_of,
    confirm,
    detect,
)
from app.files.naming import original_name, sanitize_filename
from app.files.writer import ChecksumMismatch, PartWriter, TooLarge
from app.jobs.estimate import file_estimates
from app.metrics import record_upload
from app.quotas.service import QuotaService
from db.models import File, FileKind, FileStatus, Job
from db.models.files import HOLDS_OBJECT
from db.settings import Settings
from db.storage import ObjectMissing, ObjectStore, StorageError

if TYPE_CHECKING:
    from app.jobs.service import JobService

log = logging.getLogger("sluice.files")
SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Incoming:
    """One file as the client sends it: a name, an optional size and checksum, and its bytes."""

    filename: str
    body: AsyncIterator[bytes]
    declared_size: int | None = None
    sha256: str | None = None
    process: bool = True


class NotAccepted(Exception):
    """The whole body turned out not to be a type Sluice accepts (a ZIP that is not a workbook)."""


def served_type(file: File) -> tuple[str, str]:
    """The media type (without parameters) and the charset a text type is served with."""
    media_type = (file.content_type or CONTENT_TYPES[FileKind.other]).split(";", 1)[0].strip()
    return media_type, charset_of(file.encoding) or "utf-8"


def storage_key(owner_id: uuid.UUID, file_id: uuid.UUID) -> str:
    return f"files/{owner_id}/{file_id}"


def check_sha256(value: str | None, header: str) -> str | None:
    if value is not None and not SHA256_HEX.match(value):
        raise Unprocessable(f"{header} must be 64 hexadecimal characters (the SHA-256 of the whole file)")
    return value.lower() if value else None


class FileService:
    def __init__(
        self,
        session: AsyncSession,
        store: ObjectStore,
        settings: Settings,
        jobs: JobService | None = None,
        *,
        memory: UploadMemory,
    ) -> None:
        self.session = session
        self.store = store
        self.settings = settings
        self.jobs = jobs
        self.memory = memory
        self.created_jobs: dict[uuid.UUID, Job] = {}
        """File id → the job that storing it created (committed with the stored file)."""
        self.batch_id: uuid.UUID | None = None
        """Set for a multi-file request: the batch its files' jobs join."""

    async def receive(self, owner: Principal, incoming: Incoming) -> File:
        """Stream ``incoming`` into the store; the record is ``stored`` only once the object is whole."""
        started = time.perf_counter()
        limit = self.settings.max_file_size
        if incoming.declared_size is not None and incoming.declared_size > limit:
            raise PayloadTooLarge(
                f"the file is {incoming.declared_size} bytes; the limit is {limit} bytes", limit=limit
            )
        incoming = await QuotaService(self.session, self.settings).admit_file(owner.owner_id, incoming)
        head, body = await _read_head(incoming.body, HEAD_BYTES)
        if not head:
            raise Unprocessable("the file is empty; send at least one byte")
        found = detect(head, complete=body is None)
        if found.kind not in self.settings.allowed_kinds:
            raise UnsupportedType(f"this file is not one Sluice accepts; send {ACCEPTED}")

        file = File(
            id=uuid.uuid4(),
            owner_id=owner.owner_id,
            original_filename=original_name(incoming.filename),
            filename=sanitize_filename(incoming.filename),
            kind=found.kind,
            encoding=found.encoding,
            content_type=found.content_type,
            process=incoming.process,
            bucket=self.store.bucket,
            status=FileStatus.receiving,
            touched_at=datetime.now(UTC),
        )
        file.storage_key = storage_key(owner.owner_id, file.id)
        self.session.add(file)
        await self.session.commit()
        progress = _Progress(self.session, file, self.settings.upload_stall_timeout)

        writer = PartWriter(
            self.store,
            file.storage_key,
            file.content_type or CONTENT_TYPES[FileKind.other],
            part_size=self.settings.part_size,
            parallel=self.settings.upload_parallel_parts,
            limit=limit,
            memory=self.memory,
            owner=owner.owner_id,
            keep_tail=TAIL_BYTES if found.provisional else 0,
        )
        try:
            await writer.write(head)
            if body is not None:
                async for data in body:
                    await writer.write(data)
                    await progress.mark(writer.upload_id)
            if writer.tail is not None and (refusal := confirm(writer.tail.value(), writer.size)) is not None:
                raise NotAccepted(refusal)
            digest = await writer.finish(incoming.sha256)
        except BaseException as exc:
            owed = writer.upload_id or progress.upload_id
            try:
                await writer.abort()
                owed = None
            except StorageError as failure:
                log.warning("multipart upload left for the sweeper", extra={"file_id": str(file.id), "error": str(failure)})
            await self._fail(file, writer.size, _reason(exc), owed)
            if isinstance(exc, NotAccepted):
                raise UnsupportedType(str(exc)) from exc
            if isinstance(exc, TooLarge):
                raise PayloadTooLarge(str(exc) + "; use a smaller file", limit=limit) from exc
            if isinstance(exc, ChecksumMismatch):
                raise Unprocessable(str(exc) + "; nothing was stored, send the file again") from exc
            raise

        elapsed = time.perf_counter() - started
        file.size = writer.size
        file.sha256 = digest
        file.status = FileStatus.stored
        file.stored_at = datetime.now(UTC)
        file.duration_ms = round(elapsed * 1000)
        file.s3_upload_id = None
        job = self.jobs.add_for_file(file, self.batch_id) if self.jobs is not None else None
        await self.session.commit()
        if job is not None:
            self.created_jobs[file.id] = job
        if self.jobs is not None:
            await self.jobs.send([job] if job is not None else [])
        log.info(
            "file stored",
            extra={
                "file_id": str(file.id),
                "owner_id": str(owner.owner_id),
                "size": file.size,
                "kind": str(file.kind),
                "duration_ms": file.duration_ms,
                "mib_s": round(file.size / 1048576 / elapsed, 1) if elapsed else None,
            },
        )
        record_upload(self._route, str(file.kind), "stored", file.size, elapsed, received=file.size)
        return file

    async def _fail(self, file: File, size: int, reason: str, owed: str | None) -> None:
        """Fail the record, unless it was closed meanwhile (deleted, or failed by the sweeper);
        ``owed`` names a multipart upload the store could not release, for the sweeper."""
        await self.session.rollback()
        await self.session.refresh(file, with_for_update=True)
        if file.status == FileStatus.receiving:
            file.status = FileStatus.failed
            file.size = size
            file.error = reason
        file.s3_upload_id = owed
        await self.session.commit()
        log.warning("upload failed", extra={"file_id": str(file.id), "size": size, "reason": reason})
        record_upload(self._route, str(file.kind), "failed", received=size)

    @property
    def _route(self) -> str:
        return "batch" if self.batch_id is not None else "single"

    async def get(self, owner: Principal, file_id: uuid.UUID) -> File:
        file = await self.session.scalar(select(File).where(File.id == file_id, File.owner_id == owner.owner_id))
        if file is None:
            raise NotFound(f"no file {file_id}")
        return file

    async def latest_jobs(self, files: Sequence[File]) -> dict[uuid.UUID, Job]:
        """Each file's most recent job (the one its record reports), by file id."""
        if not files:
            return {}
        rows = await self.session.scalars(
            select(Job)
            .where(Job.file_id.in_([f.id for f in files]))
            .order_by(Job.file_id, Job.created_at.desc())
            .distinct(Job.file_id)
        )
        return {job.file_id: job for job in rows}

    async def estimates(self, files: Sequence[File], latest_jobs: Mapping[uuid.UUID, Job]) -> dict[uuid.UUID, float]:
        """Seconds processing should take, for each stored file not processed yet (app/jobs/estimate.py)."""
        return await file_estimates(self.session, files, latest_jobs)

    async def list(
        self,
        owner: Principal,
        *,
        offset: int,
        limit: int,
        status: FileStatus | None,
        kind: FileKind | None = None,
        q: str | None = None,
    ) -> tuple[list[File], int]:
        """``q`` matches a substring of the name or the original name, any case; ``%``, ``_`` and
        ``\\`` in it are literal (``autoescape``)."""
        where = [File.owner_id == owner.owner_id]
        where.append(File.status == status if status else File.status != FileStatus.deleted)
        if kind:
            where.append(File.kind == kind)
        if q:
            where.append(or_(File.filename.icontains(q, autoescape=True), File.original_filename.icontains(q, autoescape=True)))
        total = await self.session.scalar(select(func.count()).select_from(File).where(*where)) or 0
        rows = await self.session.scalars(
            select(File).where(*where).order_by(File.created_at.desc(), File.id).offset(offset).limit(limit)
        )
        return list(rows), total

    async def open_content(self, owner: Principal, file_id: uuid.UUID) -> tuple[File, Iterator[bytes]]:
        file = await self.get(owner, file_id)
        if file.status == FileStatus.deleted:
            raise Gone(f"file {file_id} was deleted")
        if file.status == FileStatus.quarantined:
            raise Conflict(f"file {file_id} is quarantined: the malware scanner found {file.scan_signature}; its content is never served")
        if file.status == FileStatus.scanning:
            raise Conflict(f"file {file_id} is being scanned for malware; its content is served once it is found clean")
        if file.status != FileStatus.stored:
            raise NotFound(f"file {file_id} has no content: it is {file.status}")
        try:
            stream = await to_thread.run_sync(self.store.open, file.storage_key)
        except ObjectMissing as exc:
            log.error("stored file has no object", extra={"file_id": str(file.id), "key": file.storage_key})
            raise Gone(
                f"the bytes of file {file_id} are missing from the object store (it lost them); upload the file again"
            ) from exc
        return file, _chunks(stream)

    async def delete(self, owner: Principal, file_id: uuid.UUID) -> None:
        """The record is ``deleted`` first; its object goes after the commit, or, while the store is
        down, when the sweeper gets to it: never a ``stored`` record without bytes."""
        file = await self.get(owner, file_id)
        if file.status == FileStatus.deleted:
            return
        if self.jobs is not None:
            await self.jobs.forget_file(file)
        has_object = file.status in HOLDS_OBJECT
        file.status = FileStatus.deleted
        file.deleted_at = datetime.now(UTC)
        file.purge_pending = has_object
        await self.session.commit()
        if not has_object:
            return
        try:
            await to_thread.run_sync(self.store.delete, file.storage_key)
        except StorageError as exc:
            log.warning("object of a deleted file left for the sweeper", extra={"file_id": str(file.id), "error": str(exc)})
            return
        file.purge_pending = False
        await self.session.commit()


class _Progress:
    """Marks a streaming upload's row as alive (``touched_at``) a few times per stall timeout, and
    records its multipart upload as soon as there is one, so the sweeper can tell a dead upload
    from a slow one and knows what to release. A row closed meanwhile stops the upload."""

    def __init__(self, session: AsyncSession, file: File, stall_timeout: int) -> None:
        self._session = session
        self._file = file
        self._every = max(0.5, min(stall_timeout / 5, 60.0))
        self._last = time.monotonic()
        self.upload_id: str | None = None

    async def mark(self, upload_id: str | None) -> None:
        now = time.monotonic()
        if upload_id == self.upload_id and now - self._last < self._every:
            return
        alive = await self._session.scalar(
            update(File)
            .where(File.id == self._file.id, File.status == FileStatus.receiving)
            .values(touched_at=datetime.now(UTC), s3_upload_id=upload_id)
            .returning(File.id)
        )
        await self._session.commit()
        self._last, self.upload_id = now, upload_id
        if alive is None:
            await self._session.refresh(self._file)
            raise Conflict(
                f"file {self._file.id} was closed while it arrived ({self._file.status}: "
                f"{self._file.error or 'deleted'}); send the file again"
            )


async def _read_head(body: AsyncIterator[bytes], size: int) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """Read at least ``size`` bytes (for type detection); ``None`` as the rest means the body ended."""
    head = bytearray()
    iterator = body.__aiter__()
    while len(head) < size:
        try:
            head += await iterator.__anext__()
        except StopAsyncIteration:
            return bytes(head), None
    return bytes(head), iterator


def _chunks(stream: object) -> Iterator[bytes]:
    try:
        yield from stream.stream(READ_CHUNK)  # type: ignore[attr-defined]
    finally:
        stream.close()  # type: ignore[attr-defined]
        stream.release_conn()  # type: ignore[attr-defined]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (TooLarge, ChecksumMismatch, NotAccepted, RequestTimeout)):
        return str(exc)
    if isinstance(exc, asyncio.CancelledError):
        return "the client disconnected before the whole file arrived"
    if isinstance(exc, StorageError):
        return f"the object store failed while the file arrived ({exc}); send the file again"
    text = str(exc) or type(exc).__name__
    if "disconnected" in text:
        return "the client disconnected before the whole file arrived"
    return f"the upload failed: {text}"
