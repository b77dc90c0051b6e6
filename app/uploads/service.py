"""Chunked, resumable uploads: each chunk is one S3 part of the session's multipart upload.

Session state lives only in PostgreSQL and the object store, so any API process can serve any
request of any session. Row locks, not in-process locks, order what must not overlap: a chunk
is recorded under the session row's lock, and completion holds ``FOR UPDATE`` on the session
from the state check to the commit, so two concurrent completes assemble the object once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from anyio import to_thread
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import PartBuffer, UploadMemory
from app.errors import Conflict, Gone, NotFound, PayloadTooLarge, ServiceError, Unprocessable, UnsupportedType
from app.files.detect import ACCEPTED, CONTENT_TYPES, GZIP_MAGIC, HEAD_BYTES, TAIL_BYTES, Detected, confirm, detect
from app.files.naming import original_name, sanitize_filename
from app.files.service import check_sha256, storage_key
from app.jobs.service import JobService
from app.metrics import record_bytes, record_upload
from app.quotas.service import QuotaService
from app.uploads.schemas import ChunkRecord, CompletedUpload, SessionIn, SessionRecord
from db.models import File, FileKind, FileStatus, Job, SessionState, UploadChunk, UploadSession
from db.settings import MiB, Settings
from db.storage import ObjectStore, PartInfo, StorageError
from workers.contracts import UploadEvent, upload_channel
from workers.progress import publish

log = logging.getLogger("sluice.uploads")
MIN_PART = 5 * MiB
"""S3 refuses parts below 5 MiB, except the last one."""
MAX_CHUNKS = 10_000
"""S3 allows at most 10,000 parts in one multipart upload."""
VERIFY_READ = 8 * MiB
MAX_LIFETIME_TTLS = 2
"""Chunks extend a session's life, up to this many TTLs after it started (48 h by default)."""
MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: *;[\x20-\x7e]*)?\Z")
"""``type/subtype`` and optional parameters, printable ASCII: what an S3 Content-Type header can carry."""


def plan_chunks(size: int, requested: int | None, settings: Settings) -> tuple[int, int]:
    """The chunk size and number of chunks for a file of ``size`` bytes; raises with what to change."""
    if size < 1:
        raise Unprocessable("size must be the file's length in bytes, at least 1")
    if size > settings.max_file_size:
        raise PayloadTooLarge(
            f"the file is {size} bytes; the limit is {settings.max_file_size} bytes", limit=settings.max_file_size
        )
    smallest = _round_up(math.ceil(size / MAX_CHUNKS), MiB)
    if requested is None:
        chunk = min(max(settings.chunk_size, smallest), size)
        return chunk, math.ceil(size / chunk)
    chunk = min(requested, size)
    if chunk < 1:
        raise Unprocessable("chunk_size must be a positive number of bytes")
    if chunk < MIN_PART and chunk < size:
        raise Unprocessable(
            f"chunk_size must be at least {MIN_PART} bytes (5 MiB, the S3 part minimum) unless the whole file is one chunk"
        )
    if chunk > settings.max_chunk_size:
        raise Unprocessable(f"chunk_size must be at most {settings.max_chunk_size} bytes")
    total = math.ceil(size / chunk)
    if total > MAX_CHUNKS:
        raise Unprocessable(
            f"{size} bytes in chunks of {chunk} bytes make {total} chunks; the limit is {MAX_CHUNKS}: "
            f"use a chunk_size of at least {max(smallest, MIN_PART)} bytes",
            min_chunk_size=max(smallest, MIN_PART),
        )
    return chunk, total


def check_content_type(value: str | None) -> str | None:
    """``value`` if it is a media type S3 and HTTP headers can carry; raises with what to send instead."""
    if value is None or MEDIA_TYPE.match(value):
        return value
    raise Unprocessable(
        "content_type must be a media type such as text/csv or text/csv; charset=utf-8 (printable ASCII only)"
    )


def chunk_length(upload: UploadSession, index: int) -> int:
    if index < upload.total_chunks - 1:
        return upload.chunk_size
    return upload.size - upload.chunk_size * (upload.total_chunks - 1)


def planned_file_id(upload: UploadSession) -> uuid.UUID:
    """The id the file record gets on completion: the last segment of the storage key."""
    return uuid.UUID(upload.storage_key.rsplit("/", 1)[1])


class UploadService:
    def __init__(
        self,
        session: AsyncSession,
        store: ObjectStore,
        settings: Settings,
        redis: Redis,
        jobs: JobService,
        memory: UploadMemory,
    ) -> None:
        self.session = session
        self.store = store
        self.settings = settings
        self.redis = redis
        self.jobs = jobs
        self.memory = memory

    async def create(self, owner: Principal, data: SessionIn) -> SessionRecord:
        chunk, total = plan_chunks(data.size, data.chunk_size, self.settings)
        await QuotaService(self.session, self.settings).admit_session(owner.owner_id, data.size)
        sha256 = check_sha256(data.sha256, "sha256")
        filename = sanitize_filename(data.filename)
        content_type = check_content_type(data.content_type)
        key = storage_key(owner.owner_id, uuid.uuid4())
        object_type = content_type or mimetypes.guess_type(filename)[0] or CONTENT_TYPES[FileKind.other]
        # The multipart upload exists before the row does; a crash in between leaves an orphan
        # that the maintenance task aborts once it is older than its grace period.
        s3_upload_id = await to_thread.run_sync(self.store.create, key, object_type)
        upload = UploadSession(
            id=uuid.uuid4(),
            owner_id=owner.owner_id,
            original_filename=original_name(data.filename),
            filename=filename,
            size=data.size,
            chunk_size=chunk,
            total_chunks=total,
            sha256=sha256,
            content_type=content_type,
            process=data.process,
            state=SessionState.receiving,
            bucket=self.store.bucket,
            storage_key=key,
            s3_upload_id=s3_upload_id,
            expires_at=self._new_expiry(),
        )
        self.session.add(upload)
        await self.session.commit()
        log.info("upload session created", extra={"upload_id": str(upload.id), "size": data.size, "chunks": total})
        return SessionRecord.of(upload, str(upload.state), [], 0)

    async def get(self, owner: Principal, upload_id: uuid.UUID) -> SessionRecord:
        upload = await self._find(owner, upload_id)
        rows = (
            await self.session.execute(
                select(UploadChunk.index, UploadChunk.size)
                .where(UploadChunk.session_id == upload.id)
                .order_by(UploadChunk.index)
            )
        ).all()
        return SessionRecord.of(upload, str(self._state(upload)), [r.index for r in rows], sum(r.size for r in rows))

    async def put_chunk(
        self,
        owner: Principal,
        upload_id: uuid.UUID,
        index: int,
        body: AsyncIterator[bytes],
        declared_size: int | None,
        sha256: str | None,
    ) -> ChunkRecord:
        upload = await self._find(owner, upload_id)
        self._ensure_protocol(upload, "chunks")
        self._ensure_receiving(upload)
        # No transaction (and no pooled connection) stays open while the body arrives.
        await self.session.commit()
        if not 0 <= index < upload.total_chunks:
            raise Unprocessable(f"chunk index must be from 0 to {upload.total_chunks - 1}, not {index}")
        expected = chunk_length(upload, index)
        if declared_size is not None and declared_size != expected:
            raise Unprocessable(f"chunk {index} must be exactly {expected} bytes; Content-Length says {declared_size}")
        # Memory is paid as the chunk's bytes arrive, shared with every other upload of the process.
        async with PartBuffer(self.memory.claim(owner.owner_id, expected)) as buffer:
            part, digest, detected = await self._receive_chunk(upload, index, body, buffer, sha256)

        values: dict[str, object] = {"expires_at": self._new_expiry(upload.created_at), "updated_at": func.now()}
        if detected is not None:
            values |= {"kind": detected.kind, "encoding": detected.encoding}
        touched = await self.session.scalar(
            update(UploadSession)
            .where(UploadSession.id == upload.id, UploadSession.state == SessionState.receiving)
            .values(**values)
            .returning(UploadSession.id)
        )
        if touched is None:
            await self.session.rollback()
            await self.session.refresh(upload)
            raise self._refusal(upload) or Conflict(f"upload session {upload.id} changed state; ask GET for it")
        chunk = insert(UploadChunk).values(
            session_id=upload.id, index=index, size=expected, sha256=digest, etag=part.etag
        )
        await self.session.execute(
            chunk.on_conflict_do_update(
                index_elements=[UploadChunk.session_id, UploadChunk.index],
                set_={"size": expected, "sha256": digest, "etag": part.etag, "received_at": func.now()},
            )
        )
        received, bytes_received = (
            await self.session.execute(
                select(func.count(), func.coalesce(func.sum(UploadChunk.size), 0)).where(
                    UploadChunk.session_id == upload.id
                )
            )
        ).one()
        await self.session.commit()
        # SUM over BIGINT is NUMERIC in PostgreSQL.
        await self._publish(upload, "chunk", received=received, bytes_received=int(bytes_received))
        record_bytes("chunked", expected)
        return ChunkRecord(index=index, size=expected, sha256=digest, received=received, total_chunks=upload.total_chunks)

    async def _receive_chunk(
        self, upload: UploadSession, index: int, body: AsyncIterator[bytes], buffer: PartBuffer, sha256: str | None
    ) -> tuple[PartInfo, str, Detected | None]:
        """Read, check and store one chunk as its S3 part; nothing is recorded yet."""
        await _read_exactly(body, buffer, index)
        with buffer.view() as data:
            return await self._store_chunk(upload, index, data, sha256)

    async def _store_chunk(
        self, upload: UploadSession, index: int, data: memoryview, sha256: str | None
    ) -> tuple[PartInfo, str, Detected | None]:
        digest = await to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
        if sha256 is not None and not hmac.compare_digest(digest, sha256):
            raise Unprocessable(
                f"X-Chunk-SHA256 of chunk {index} does not match: the bytes that arrived hash to {digest}; "
                "the chunk was not recorded, send it again"
            )
        detected = None
        if index == 0:
            detected = detect(bytes(data[:HEAD_BYTES]), complete=upload.size <= HEAD_BYTES)
            if detected.kind not in self.settings.allowed_kinds:
                await self._finish(upload, SessionState.failed, f"this file is not one Sluice accepts; send {ACCEPTED}")
                raise UnsupportedType(
                    f"this file is not one Sluice accepts; send {ACCEPTED}. The upload session was closed."
                )
        try:
            part = await to_thread.run_sync(
                self.store.put_part, upload.storage_key, upload.s3_upload_id, index + 1, data, digest
            )
        except StorageError:
            # An abort or expiry that won the race removed the multipart upload: say so, not 503.
            await self.session.refresh(upload)
            self._ensure_receiving(upload)
            raise
        return part, digest, detected

    async def complete(self, owner: Principal, upload_id: uuid.UUID, *, protocol: str = "chunks") -> CompletedUpload:
        """Assemble the session's parts into the file; ``protocol`` is the API the caller speaks."""
        upload = await self._find(owner, upload_id, lock=True)
        if upload.state == SessionState.completed:
            return await self._completed(upload)
        self._ensure_protocol(upload, protocol)
        self._ensure_receiving(upload)
        chunks = list(
            await self.session.scalars(
                select(UploadChunk).where(UploadChunk.session_id == upload.id).order_by(UploadChunk.index)
            )
        )
        have = {c.index for c in chunks}
        missing = [i for i in range(upload.total_chunks) if i not in have]
        if missing:
            refusal = Conflict(
                f"{len(missing)} of {upload.total_chunks} chunks are missing; send them, then complete again",
                missing_chunks=missing,
            )
            await self.session.rollback()
            raise refusal
        started = datetime.now(UTC)
        existing = await to_thread.run_sync(self.store.stat, upload.storage_key)
        # An object of the right size means an earlier complete assembled it and then lost its
        # transaction (crash, lost connection): the multipart upload is gone, the object is whole.
        if existing is None or existing.size != upload.size:
            parts = [PartInfo(c.index + 1, c.etag) for c in chunks]
            await to_thread.run_sync(self.store.complete, upload.storage_key, upload.s3_upload_id, parts)
        if upload.kind == FileKind.xlsx:
            # Chunk 0 only showed an OOXML ZIP; the central directory at its end says if it is a workbook.
            refusal = await to_thread.run_sync(self._zip_refusal, upload)
            if refusal is not None:
                await to_thread.run_sync(self.store.delete, upload.storage_key)
                await self._set_state(upload, SessionState.failed, refusal)
                raise UnsupportedType(f"{refusal}. The file was deleted and the upload session closed.")
        if upload.sha256 is not None:
            digest = await to_thread.run_sync(self._object_sha256, upload.storage_key)
            if not hmac.compare_digest(digest, upload.sha256):
                await to_thread.run_sync(self.store.delete, upload.storage_key)
                reason = (
                    f"SHA-256 of the assembled file is {digest}, not the {upload.sha256} that was announced; "
                    "the file was deleted, start a new upload"
                )
                await self._set_state(upload, SessionState.failed, reason)
                raise Unprocessable(reason)

        kind = upload.kind or FileKind.other
        gzipped = kind in (FileKind.csv, FileKind.tsv) and await to_thread.run_sync(self._gzipped, upload)
        file = File(
            id=planned_file_id(upload),
            owner_id=upload.owner_id,
            original_filename=upload.original_filename,
            filename=upload.filename,
            size=upload.size,
            sha256=upload.sha256,
            content_type=Detected(kind, upload.encoding, gzip=gzipped).content_type,
            kind=kind,
            encoding=upload.encoding,
            status=FileStatus.stored,
            process=upload.process,
            bucket=upload.bucket,
            storage_key=upload.storage_key,
            stored_at=datetime.now(UTC),
            duration_ms=round((datetime.now(UTC) - upload.created_at).total_seconds() * 1000),
        )
        self.session.add(file)
        await self.session.flush()
        upload.state = SessionState.completed
        upload.file_id = file.id
        # The file, the completed session and its job are committed together.
        job = self.jobs.add_for_file(file)
        await self.session.commit()
        await self.jobs.send([job] if job is not None else [])
        log.info(
            "chunked upload completed",
            extra={
                "upload_id": str(upload.id),
                "file_id": str(file.id),
                "size": file.size,
                "assembly_ms": round((datetime.now(UTC) - started).total_seconds() * 1000),
            },
        )
        record_upload(_route(upload), str(file.kind), "stored", file.size, (file.duration_ms or 0) / 1000)
        job_id = job.id if job is not None else None
        await self._publish(upload, "completed", file_id=file.id, job_id=job_id)
        return CompletedUpload.of_upload(file, upload.id, job_id)

    async def abort(self, owner: Principal, upload_id: uuid.UUID, *, reason: str = "aborted by the client") -> None:
        upload = await self._find(owner, upload_id, lock=True)
        if upload.state == SessionState.completed:
            refusal = Conflict(
                f"upload {upload.id} is complete; delete its file with DELETE /api/v1/files/{upload.file_id}"
            )
            await self.session.rollback()
            raise refusal
        if upload.state != SessionState.receiving:
            await self.session.rollback()
            return
        await self._finish(upload, SessionState.aborted, reason)

    async def _finish(self, upload: UploadSession, state: SessionState, reason: str) -> None:
        """Release the multipart upload and close the session with ``state``; while the store is
        down the session closes all the same and the sweeper releases the upload later."""
        owed = False
        try:
            await to_thread.run_sync(self.store.abort, upload.storage_key, upload.s3_upload_id)
        except StorageError as exc:
            log.warning("multipart upload left for the sweeper", extra={"upload_id": str(upload.id), "error": str(exc)})
            owed = True
        await self._set_state(upload, state, reason, abort_pending=owed)

    async def _set_state(
        self, upload: UploadSession, state: SessionState, reason: str, *, abort_pending: bool = False
    ) -> None:
        await self.session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload.id)
            .values(state=state, error=reason, abort_pending=abort_pending, updated_at=func.now())
        )
        await self.session.commit()
        await self.session.refresh(upload)
        log.info("upload session closed", extra={"upload_id": str(upload.id), "state": str(state), "reason": reason})
        record_upload(_route(upload), str(upload.kind or FileKind.other), str(state))
        await self._publish(upload, str(state), error=reason)

    async def _completed(self, upload: UploadSession) -> CompletedUpload:
        file = await self.session.get_one(File, upload.file_id)
        job_id = await self.session.scalar(
            select(Job.id).where(Job.file_id == file.id).order_by(Job.created_at).limit(1)
        )
        await self.session.commit()
        return CompletedUpload.of_upload(file, upload.id, job_id)

    async def _find(self, owner: Principal, upload_id: uuid.UUID, *, lock: bool = False) -> UploadSession:
        query = (
            select(UploadSession)
            .where(UploadSession.id == upload_id, UploadSession.owner_id == owner.owner_id)
            .execution_options(populate_existing=True)
        )
        if lock:
            query = query.with_for_update()
        upload = await self.session.scalar(query)
        if upload is None:
            raise NotFound(f"no upload session {upload_id}")
        return upload

    def _state(self, upload: UploadSession) -> SessionState:
        """The state as the client should see it: a lapsed session is expired before the sweeper says so."""
        if upload.state == SessionState.receiving and upload.expires_at <= datetime.now(UTC):
            return SessionState.expired
        return upload.state

    def _ensure_protocol(self, upload: UploadSession, protocol: str) -> None:
        # A tus upload's bytes past its last whole part wait outside the parts: chunks or a
        # complete from the chunk API would make a file without them.
        if upload.protocol != protocol:
            raise Conflict(
                f"upload {upload.id} is a {upload.protocol} upload; send its bytes with PATCH /api/v1/tus/{upload.id}"
                if upload.protocol == "tus"
                else f"upload {upload.id} is a {upload.protocol} upload; use the chunk routes of /api/v1/uploads"
            )

    def _ensure_receiving(self, upload: UploadSession) -> None:
        refusal = self._refusal(upload)
        if refusal is not None:
            raise refusal

    def _refusal(self, upload: UploadSession) -> ServiceError | None:
        """Why the session takes no more chunks, or ``None`` when it does."""
        state = self._state(upload)
        if state == SessionState.receiving:
            return None
        if state == SessionState.expired:
            return Gone(f"upload session {upload.id} expired at {upload.expires_at.isoformat()}; start a new upload")
        if state == SessionState.completed:
            return Conflict(f"upload session {upload.id} is already complete (file {upload.file_id})")
        return Conflict(f"upload session {upload.id} is {state} ({upload.error}); start a new upload")

    def _new_expiry(self, started: datetime | None = None) -> datetime:
        """``session_ttl`` from now, but never past ``MAX_LIFETIME_TTLS`` TTLs from the start: the
        object store purges multipart uploads by age (MinIO's ``stale_uploads_expiry``)."""
        ttl = timedelta(seconds=self.settings.session_ttl)
        now = datetime.now(UTC)
        return min(now + ttl, (started or now) + MAX_LIFETIME_TTLS * ttl)

    def _zip_refusal(self, upload: UploadSession) -> str | None:
        """The detector's final verdict on an assembled ZIP, from a range read of its last bytes."""
        start = max(upload.size - TAIL_BYTES, 0)
        stream = self.store.open(upload.storage_key, start, upload.size - start)
        try:
            tail = stream.read()
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]
        return confirm(tail, upload.size)

    def _gzipped(self, upload: UploadSession) -> bool:
        """Whether the assembled text file is gzip-compressed (chunk 0 was detected through it)."""
        stream = self.store.open(upload.storage_key, 0, len(GZIP_MAGIC))
        try:
            return stream.read() == GZIP_MAGIC
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]

    def _object_sha256(self, key: str) -> str:
        """Reads the assembled object back once, in bounded pieces (a full GET: about 1 s per GiB)."""
        digest = hashlib.sha256()
        stream = self.store.open(key)
        try:
            for piece in stream.stream(VERIFY_READ):  # type: ignore[attr-defined]
                digest.update(piece)
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]
        return digest.hexdigest()

    async def _publish(
        self,
        upload: UploadSession,
        kind: str,
        *,
        received: int | None = None,
        bytes_received: int | None = None,
        file_id: uuid.UUID | None = None,
        job_id: uuid.UUID | None = None,
        error: str | None = None,
    ) -> None:
        if received is None:
            received = upload.total_chunks if kind == "completed" else 0
            bytes_received = upload.size if kind == "completed" else 0
        event = UploadEvent(
            type=kind,
            upload_id=str(upload.id),
            state=str(upload.state),
            received_chunks=received,
            total_chunks=upload.total_chunks,
            bytes_received=bytes_received or 0,
            size=upload.size,
            file_id=str(file_id) if file_id else None,
            job_id=str(job_id) if job_id else None,
            error=error,
        )
        try:
            await publish(self.redis, upload_channel(self.settings.redis_prefix, upload.id), event)
        except Exception as exc:  # noqa: BLE001 - progress is best effort; the upload itself succeeded
            log.warning("could not publish upload event", extra={"upload_id": str(upload.id), "error": str(exc)})


async def _read_exactly(body: AsyncIterator[bytes], buffer: PartBuffer, index: int) -> None:
    """Fill ``buffer`` with the whole chunk, refusing it as soon as more bytes arrive than it holds.

    The body is copied once into the buffer, which goes to S3 as it is: one chunk in memory per
    request, not a list of pieces plus their join.
    """
    expected = buffer.capacity
    async for data in body:
        if buffer.length + len(data) > expected:
            raise Unprocessable(f"chunk {index} must be exactly {expected} bytes; more arrived")
        await buffer.fill(memoryview(data))
    if buffer.length != expected:
        raise Unprocessable(f"chunk {index} must be exactly {expected} bytes; {buffer.length} arrived")


def _route(upload: UploadSession) -> str:
    return "tus" if upload.protocol == "tus" else "chunked"


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step
