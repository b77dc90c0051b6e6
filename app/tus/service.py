"""tus 1.0 uploads as upload sessions: the same rows, parts, expiry, events and completion as the
chunk API (``UploadService``), addressed by byte offset instead of chunk index.

Bytes go to the session's S3 multipart upload in parts of ``part_size``. A PATCH that ends mid-part
stores what is left (the tail) as the small object ``tus-tails/<id>``; the next PATCH, on any API
process, reads it back in front of its own bytes. ``offset`` therefore counts only bytes that are
in the object store, and it moves in the same transaction that records a part or a tail.

One PATCH at a time: a lease on the session row (``lock_token``/``locked_until``) taken with one
conditional UPDATE; the loser answers 409. No connection is held while the body arrives, and a
lease left by a process that died lapses by itself.

Checksums: with ``Upload-Checksum`` the parts still stream to S3 as they fill (memory stays one
part), but nothing is recorded until the digest matches. On a mismatch the offset stays where it
was; the parts already sent are unrecorded and the next PATCH overwrites them (S3 replaces a part
sent again under the same number), and the tail object is left as it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import mimetypes
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from anyio import to_thread
from litestar.datastructures import State
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.budget import GRAIN, PartBuffer, UploadMemory
from app.errors import Conflict, Gone, NotFound, PayloadTooLarge, ServiceError, Unprocessable, UnsupportedType
from app.files.detect import ACCEPTED, CONTENT_TYPES, HEAD_BYTES, Detected, detect
from app.files.naming import original_name, sanitize_filename
from app.files.service import storage_key
from app.metrics import record_bytes
from app.quotas.service import QuotaService
from app.tus.schemas import Checksum, Creation, TusState
from app.jobs.service import JobService
from app.uploads.service import MAX_CHUNKS, MIN_PART, UploadService, check_content_type
from db.models import FileKind, SessionState, UploadChunk, UploadSession
from db.settings import MiB, Settings
from db.storage import ObjectRange, ObjectStore, PartInfo, StorageError, tus_tail_key

log = logging.getLogger("sluice.tus")
TAIL_TYPE = "application/octet-stream"
BASE = "/api/v1/tus"
JOIN_PREFIX = "tus-joins/"
"""Temporary objects of a final upload's join: small partials' bytes gathered into 5 MiB pieces."""
JOIN_TYPE = CONTENT_TYPES[FileKind.other]
HASHES: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}


class Forbidden(ServiceError):
    status_code = 403


class ChecksumMismatch(ServiceError):
    """tus's own status for a body whose ``Upload-Checksum`` does not match."""

    status_code = 460


class Overlap:
    """Part buffers on their way to S3 while their PATCH fills the next one, shared by every tus
    PATCH of a process: a lone PATCH may have ``slots`` parts in flight; PATCHes at once share
    them, down to none when there are more PATCHes than slots (each then stores a part before
    it fills the next). So tus holds about ``max(PATCHes, slots + 1)`` part buffers, not twice
    as many as there are PATCHes: concurrent streams keep S3 busy without the overlap."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.active = 0
        self._held: set[PartBuffer] = set()

    def enter(self) -> None:
        self.active += 1

    def leave(self) -> None:
        self.active -= 1

    def take(self, buffer: PartBuffer) -> bool:
        """Whether ``buffer`` may go to S3 while its PATCH fills the next one."""
        if len(self._held) >= self.slots + 1 - self.active:
            return False
        self._held.add(buffer)
        return True

    def release(self, buffer: PartBuffer) -> None:
        self._held.discard(buffer)


def tus_overlap(state: State, settings: Settings) -> Overlap:
    """The process's one ``Overlap`` (per app), made on first use."""
    overlap: Overlap | None = state.get("tus_overlap")
    if overlap is None:
        overlap = state["tus_overlap"] = Overlap(settings.upload_parallel_parts)
    return overlap


class TusService(UploadService):
    """tus over upload sessions; ``complete``, ``_finish`` and ``_publish`` are the chunk API's own."""

    def __init__(
        self,
        session: AsyncSession,
        store: ObjectStore,
        settings: Settings,
        redis: Redis,
        jobs: JobService,
        memory: UploadMemory,
        overlap: Overlap,
    ) -> None:
        super().__init__(session, store, settings, redis, jobs, memory)
        self.overlap = overlap
        self._gzip_seen: dict[uuid.UUID, bool] = {}
        """Whether the first bytes were gzip, for uploads whose first part passed through this request."""

    async def begin(self, owner: Principal, spec: Creation) -> TusState:
        if spec.final_of is not None:
            return await self._create_final(owner, spec)
        length = spec.length
        if length is not None:
            self._check_length(length)
        await QuotaService(self.session, self.settings).admit_session(owner.owner_id, length)
        raw_name = _text(spec.metadata, "filename") or "upload"
        filename = sanitize_filename(raw_name)
        content_type = check_content_type(_text(spec.metadata, "filetype") or None)
        key = storage_key(owner.owner_id, uuid.uuid4())
        object_type = content_type or mimetypes.guess_type(filename)[0] or CONTENT_TYPES[FileKind.other]
        s3_upload_id = await to_thread.run_sync(self.store.create, key, object_type)
        part_size = self._partial_part_size() if spec.partial else self.settings.part_size
        upload = UploadSession(
            id=uuid.uuid4(),
            owner_id=owner.owner_id,
            original_filename=original_name(raw_name),
            filename=filename,
            size=length or 0,
            chunk_size=part_size,
            total_chunks=math.ceil((length or 0) / part_size),
            content_type=content_type,
            process=_process(spec.metadata),
            state=SessionState.receiving,
            bucket=self.store.bucket,
            storage_key=key,
            s3_upload_id=s3_upload_id,
            expires_at=self._new_expiry(),
            protocol="tus",
            length_deferred=length is None,
            tus_metadata=spec.raw_metadata,
            concat="partial" if spec.partial else None,
        )
        self.session.add(upload)
        await self.session.commit()
        log.info("tus upload created", extra={"upload_id": str(upload.id), "size": length})
        return self._state_of(upload)

    async def state(self, owner: Principal, upload_id: uuid.UUID) -> TusState:
        upload = await self._tus(owner, upload_id)
        await self.session.commit()
        if upload.concat == "final" and self._state(upload) == SessionState.receiving:
            # Normally the request that completes the last partial upload joins; this retries a
            # join the object store refused at that moment.
            await self._join_quietly(owner, upload.id, wait=False)
        return await self._state_with_job(owner, upload_id)

    async def patch(
        self,
        owner: Principal,
        upload_id: uuid.UUID,
        offset: int,
        body: AsyncIterator[bytes],
        *,
        length: int | None = None,
        checksum: Checksum | None = None,
    ) -> TusState:
        upload = await self._tus(owner, upload_id)
        if upload.concat == "final":
            raise Forbidden(f"upload {upload.id} is a final (concatenated) upload; it takes no PATCH")
        self._ensure_alive(upload)
        if upload.length_deferred:
            body = await QuotaService(self.session, self.settings).meter(owner.owner_id, body)
        token = await self._lock(upload)
        try:
            upload = await self._tus(owner, upload_id)
            return await self._patch_locked(owner, upload, token, offset, body, length, checksum)
        finally:
            await self._unlock(upload_id, token)

    async def terminate(
        self, owner: Principal, upload_id: uuid.UUID, *, reason: str = "terminated by the client (tus DELETE)"
    ) -> None:
        upload = await self._tus(owner, upload_id, lock=True)
        if upload.concat == "final" and upload.state == SessionState.receiving:
            await self.session.execute(
                update(UploadSession)
                .where(UploadSession.concat == "partial", UploadSession.concat_of == str(upload.id))
                .values(concat_of=None)
            )
            await self._set_state(upload, SessionState.aborted, reason)
            return
        final = await self._claimed_by(upload)
        if upload.state == SessionState.receiving:
            await self._finish(upload, SessionState.aborted, reason)
            await self._drop_tail(upload.id)
        elif upload.state == SessionState.completed and upload.concat == "partial":
            if final is not None and final.state == SessionState.completed:
                raise Conflict(
                    f"partial upload {upload.id} is joined into final upload {final.id}; delete its file "
                    f"with DELETE /api/v1/files/{final.file_id}"
                )
            owed = await self._delete_owed(upload.id, upload.storage_key)
            await self._set_state(upload, SessionState.aborted, reason, abort_pending=owed)
        elif upload.state == SessionState.completed:
            raise Conflict(
                f"upload {upload.id} is complete; delete its file with DELETE /api/v1/files/{upload.file_id}"
            )
        else:
            raise NotFound(f"upload {upload.id} is {upload.state} already")
        if final is not None:
            # A final upload that lost one of its partial uploads can never be joined: this fails it.
            await self._join_quietly(owner, final.id)

    async def _claimed_by(self, upload: UploadSession) -> UploadSession | None:
        """The final upload that claimed this partial upload, if one did."""
        if upload.concat != "partial" or upload.concat_of is None:
            return None
        return await self.session.get(UploadSession, uuid.UUID(upload.concat_of))

    async def _patch_locked(
        self,
        owner: Principal,
        upload: UploadSession,
        token: uuid.UUID,
        offset: int,
        body: AsyncIterator[bytes],
        length: int | None,
        checksum: Checksum | None,
    ) -> TusState:
        self._ensure_alive(upload)
        if upload.state == SessionState.completed:
            raise Conflict(f"upload {upload.id} is complete ({upload.size} bytes); it takes no more bytes")
        if offset != upload.offset:
            raise Conflict(
                f"Upload-Offset is {offset} but upload {upload.id} has {upload.offset} bytes; "
                "ask HEAD for the offset and continue from there",
                offset=upload.offset,
            )
        if length is not None:
            await self._declare_length(upload, length)
        await self.session.commit()
        limit = self.settings.max_file_size if upload.length_deferred else upload.size
        start = upload.offset
        stored_parts = (upload.offset - upload.tail_size) // upload.chunk_size
        async with AsyncExitStack() as buffers:
            buffer = await buffers.enter_async_context(PartBuffer(self.memory.claim(owner.owner_id, upload.chunk_size)))
            if upload.tail_size:
                await self._read_tail(upload, buffer)
            digest = HASHES[checksum.algorithm]() if checksum is not None else None
            number = stored_parts + 1
            unrecorded: list[tuple[PartInfo, str]] = []
            received = 0
            interrupted: Exception | None = None
            # Full parts go to S3 while the next one fills, so the body keeps flowing meanwhile; each
            # part has a buffer of its own, closed once stored: the budget grants memory counting on
            # a full buffer to be given back (app/budget.py), so a full one is never refilled. How
            # many may be on their way at once is shared by every PATCH of the process (``overlap``).
            sending: list[asyncio.Task[None]] = []
            database = asyncio.Lock()
            self.overlap.enter()

            async def send(full: PartBuffer, number: int, previous: asyncio.Task[None] | None) -> None:
                try:
                    part = await self._store_part(upload, full, number, database)
                finally:
                    full.close()
                    self.overlap.release(full)
                if previous is not None:
                    await previous  # the offset moves in part order
                async with database:
                    if checksum is None:
                        await self._record(upload, token, [part], upload.chunk_size * number, 0)
                    else:
                        # Nothing counts before the digest matches, but the lease must last the whole body.
                        await self._renew(upload, token)
                        unrecorded.append(part)

            try:
                chunks = body.__aiter__()
                while True:
                    try:
                        data = await chunks.__anext__()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - a dropped or stalled body: keep what arrived
                        interrupted = exc
                        break
                    if start + received + len(data) > limit:
                        raise self._too_long(upload, limit)
                    if digest is not None:
                        digest.update(data)
                    received += len(data)
                    rest = memoryview(data)
                    while rest:
                        taken = await buffer.fill(rest)
                        rest = rest[taken:]
                        if buffer.full:
                            await self._check_head(upload, buffer, number)
                            overlapping = self.overlap.take(buffer)
                            previous = sending[-1] if sending else None
                            sending.append(asyncio.create_task(send(buffer, number, previous)))
                            if not overlapping:
                                # No slot free: this part is stored before the next one fills.
                                await asyncio.gather(*sending)
                                sending.clear()
                            claim = self.memory.claim(owner.owner_id, upload.chunk_size)
                            buffer = await buffers.enter_async_context(PartBuffer(claim))
                            number += 1
                if sending:
                    await asyncio.gather(*sending)
            finally:
                self.overlap.leave()
                # The parts in flight finish (or fail) before the session is used for anything else.
                if sending:
                    await asyncio.gather(*sending, return_exceptions=True)
            if checksum is not None:
                if interrupted is not None:
                    raise interrupted
                actual = digest.digest() if digest is not None else b""
                if not hmac.compare_digest(actual, checksum.digest):
                    raise ChecksumMismatch(
                        f"Upload-Checksum ({checksum.algorithm}) does not match the bytes that arrived; "
                        f"none of them count, the offset stays {start}: send them again"
                    )
            new_offset = start + received
            done = not upload.length_deferred and new_offset == upload.size and interrupted is None
            tail = buffer.length
            if done:
                if tail:
                    await self._check_head(upload, buffer, number)
                    unrecorded.append(await self._store_part(upload, buffer, number, database))
                tail = 0
            elif tail:
                await self._check_head(upload, buffer, number)
                with buffer.view() as data:
                    await to_thread.run_sync(self.store.put, tus_tail_key(upload.id), data, TAIL_TYPE)
            await self._record(upload, token, sorted(unrecorded, key=lambda p: p[0].number), new_offset, tail)
        await self._publish(upload, "chunk", received=new_offset // upload.chunk_size, bytes_received=new_offset)
        record_bytes("tus", received)
        if interrupted is not None:
            raise interrupted
        if not done:
            return self._state_of(upload)
        upload_id = upload.id
        try:
            if upload.concat == "partial":
                return await self._complete_partial(owner, upload)
            completed = await self.complete(owner, upload.id, protocol="tus")
            await self.session.refresh(upload)
            return self._state_of(upload, completed.job_id)
        finally:
            # The last part took the tail's bytes; its object goes once the upload is closed (complete
            # or refused). A completion that failed keeps it for the retry, which comes back here.
            await self.session.rollback()
            closed = await self.session.scalar(select(UploadSession.state).where(UploadSession.id == upload_id))
            if closed != SessionState.receiving:
                await self._drop_tail(upload_id)
            else:
                await self.session.commit()

    async def _store_part(
        self, upload: UploadSession, buffer: PartBuffer, number: int, database: asyncio.Lock
    ) -> tuple[PartInfo, str]:
        with buffer.view() as data:
            sha256 = await to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
            try:
                part = await to_thread.run_sync(
                    self.store.put_part, upload.storage_key, upload.s3_upload_id, number, data, sha256
                )
            except StorageError:
                # A DELETE or expiry that won the race removed the multipart upload: say so, not 503.
                async with database:
                    await self.session.refresh(upload)
                self._ensure_alive(upload)
                raise
        return part, sha256

    async def _check_head(self, upload: UploadSession, buffer: PartBuffer, number: int) -> None:
        """Detect the type once the first bytes are here. A partial upload is judged as the final one:
        its verdict is only kept, for a final upload that starts with it (no read of the joined file)."""
        if number != 1 or upload.kind is not None:
            return
        whole = not upload.length_deferred and buffer.length == upload.size
        if buffer.length < HEAD_BYTES and not whole:
            return
        with buffer.view() as data:
            detected = detect(bytes(data[:HEAD_BYTES]), complete=whole and upload.size <= HEAD_BYTES)
        self._gzip_seen[upload.id] = detected.gzip
        if upload.concat == "partial":
            upload.kind, upload.encoding = detected.kind, detected.encoding
            return
        if detected.kind not in self.settings.allowed_kinds:
            reason = f"this file is not one Sluice accepts; send {ACCEPTED}"
            await self._finish(upload, SessionState.failed, reason)
            await self._drop_tail(upload.id)
            raise UnsupportedType(f"{reason}. The upload was terminated.")
        upload.kind, upload.encoding = detected.kind, detected.encoding

    async def _record(
        self, upload: UploadSession, token: uuid.UUID, parts: list[tuple[PartInfo, str]], offset: int, tail: int
    ) -> None:
        """Move the offset, with the parts that carry it, in one transaction; only the lease holder may."""
        if parts:
            rows = insert(UploadChunk).values(
                [
                    {"session_id": upload.id, "index": p.number - 1, "size": upload.chunk_size, "sha256": s, "etag": p.etag}
                    for p, s in parts
                ]
            )
            await self.session.execute(
                rows.on_conflict_do_update(
                    index_elements=[UploadChunk.session_id, UploadChunk.index],
                    set_={"size": rows.excluded.size, "sha256": rows.excluded.sha256, "etag": rows.excluded.etag},
                )
            )
        if upload.length_deferred is False and offset == upload.size and parts:
            last = parts[-1][0].number - 1
            await self.session.execute(
                update(UploadChunk)
                .where(UploadChunk.session_id == upload.id, UploadChunk.index == last)
                .values(size=upload.size - last * upload.chunk_size)
            )
        expires = self._new_expiry(upload.created_at)
        moved = await self.session.scalar(
            update(UploadSession)
            .where(
                UploadSession.id == upload.id,
                UploadSession.lock_token == token,
                UploadSession.state == SessionState.receiving,
            )
            .values(
                offset=offset,
                tail_size=tail,
                kind=upload.kind,
                encoding=upload.encoding,
                expires_at=expires,
                locked_until=self._lease_end(),
            )
            .returning(UploadSession.id)
        )
        if moved is None:
            await self.session.rollback()
            await self.session.refresh(upload)
            self._ensure_alive(upload)
            raise Conflict(f"upload {upload.id} was taken over by another PATCH; ask HEAD for the offset")
        if upload.concat_of is not None:
            # A final upload waiting for this partial upload lives as long as the partial makes progress.
            await self.session.execute(
                update(UploadSession)
                .where(UploadSession.id == uuid.UUID(upload.concat_of), UploadSession.state == SessionState.receiving)
                .values(expires_at=func.greatest(UploadSession.expires_at, expires))
            )
        await self.session.commit()
        upload.offset, upload.tail_size = offset, tail

    async def _read_tail(self, upload: UploadSession, buffer: PartBuffer) -> None:
        stream = await to_thread.run_sync(self.store.open, tus_tail_key(upload.id), 0, upload.tail_size)
        try:
            while buffer.length < upload.tail_size:
                piece = await to_thread.run_sync(stream.read, min(GRAIN, upload.tail_size - buffer.length))
                if not piece:
                    raise StorageError(f"the tail of upload {upload.id} is shorter than recorded")
                await buffer.fill(memoryview(piece))
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]

    async def _drop_tail(self, upload_id: uuid.UUID) -> None:
        """Delete the tail object of an upload that is closed (complete, terminated, refused); while
        the store is down the delete is owed and the sweeper (``release_owed``) makes it."""
        await self._delete_owed(upload_id, tus_tail_key(upload_id))
        await self.session.commit()

    async def _complete_partial(self, owner: Principal, upload: UploadSession) -> TusState:
        """A partial upload's bytes become an object that a final upload joins; no file record yet.
        When a final upload already claimed it (concatenation-unfinished), the last one to complete
        joins them."""
        parts = list(
            await self.session.scalars(
                select(UploadChunk).where(UploadChunk.session_id == upload.id).order_by(UploadChunk.index)
            )
        )
        await to_thread.run_sync(
            self.store.complete, upload.storage_key, upload.s3_upload_id, [PartInfo(c.index + 1, c.etag) for c in parts]
        )
        await self.session.execute(
            update(UploadSession).where(UploadSession.id == upload.id).values(state=SessionState.completed)
        )
        await self.session.commit()
        await self.session.refresh(upload)
        if upload.concat_of is not None:
            await self._join_quietly(owner, uuid.UUID(upload.concat_of))
            await self.session.refresh(upload)
        return self._state_of(upload)

    async def _create_final(self, owner: Principal, spec: Creation) -> TusState:
        """A final upload claims its partial uploads, finished or not (concatenation-unfinished);
        whichever request completes the last of them joins them inside the store."""
        ids = spec.final_of or []
        if not ids:
            raise ServiceError("Upload-Concat: final; must name at least one partial upload")
        if len(set(ids)) != len(ids):
            raise ServiceError("Upload-Concat: final; names a partial upload more than once")
        found = {
            u.id: u
            for u in await self.session.scalars(
                select(UploadSession)
                .where(UploadSession.id.in_(ids), UploadSession.owner_id == owner.owner_id, UploadSession.protocol == "tus")
                .with_for_update()
            )
        }
        partials: list[UploadSession] = []
        for upload_id in ids:
            upload = found.get(upload_id)
            problem = None
            if upload is None or upload.concat != "partial":
                problem = f"{upload_id} is not a partial upload of yours"
            elif upload.concat_of is not None:
                problem = f"partial upload {upload_id} is already part of another final upload"
            elif self._state(upload) not in (SessionState.receiving, SessionState.completed):
                problem = f"partial upload {upload_id} is {self._state(upload)}; send its bytes again as a new partial upload"
            if problem:
                await self.session.rollback()
                raise ServiceError(f"Upload-Concat: {problem}")
            partials.append(upload)  # type: ignore[arg-type]
        known = not any(p.length_deferred for p in partials)
        size = sum(p.size for p in partials)
        if known:
            try:
                self._check_length(size)
            except ServiceError:
                await self.session.rollback()
                raise
        first = partials[0]
        raw_name = _text(spec.metadata, "filename")
        filetype = _text(spec.metadata, "filetype")
        final = UploadSession(
            id=uuid.uuid4(),
            owner_id=owner.owner_id,
            original_filename=original_name(raw_name) if raw_name else first.original_filename,
            filename=sanitize_filename(raw_name) if raw_name else first.filename,
            size=size if known else 0,
            chunk_size=self.settings.part_size,
            total_chunks=0,
            content_type=check_content_type(filetype) if filetype else first.content_type,
            process=_process(spec.metadata, first.process),
            state=SessionState.receiving,
            bucket=self.store.bucket,
            storage_key=storage_key(owner.owner_id, uuid.uuid4()),
            s3_upload_id="",
            expires_at=max([self._new_expiry(), *(p.expires_at for p in partials)]),
            protocol="tus",
            length_deferred=not known,
            tus_metadata=spec.raw_metadata if spec.raw_metadata is not None else first.tus_metadata,
            concat="final",
            concat_of=" ".join(str(i) for i in ids),
        )
        self.session.add(final)
        for partial in partials:
            partial.concat_of = str(final.id)
        await self.session.commit()
        log.info("tus final upload created", extra={"upload_id": str(final.id), "partials": len(ids)})
        try:
            await self._join_if_ready(owner, final.id)
        except StorageError as exc:
            # The final upload exists: its Location must reach the client, whose HEAD retries the join.
            await self.session.rollback()
            log.warning("tus join left for a later HEAD", extra={"upload_id": str(final.id), "error": str(exc)})
        return await self._state_with_job(owner, final.id)

    async def _join_quietly(self, owner: Principal, final_id: uuid.UUID, *, wait: bool = True) -> None:
        """Join on behalf of another request (a partial upload's, a HEAD): the outcome belongs to
        the final upload (its HEAD tells it), not to that request."""
        try:
            await self._join_if_ready(owner, final_id, wait=wait)
        except (ServiceError, StorageError) as exc:
            await self.session.rollback()
            log.warning("tus final upload not joined", extra={"upload_id": str(final_id), "error": str(exc)})

    async def _join_if_ready(self, owner: Principal, final_id: uuid.UUID, *, wait: bool = True) -> None:
        """Join the final upload's partials once all are complete; fail it when one of them died.
        Holds the final upload's row lock throughout, so exactly one request joins; without
        ``wait``, a join under way elsewhere is left to finish."""
        final = await self.session.scalar(
            select(UploadSession)
            .where(UploadSession.id == final_id, UploadSession.owner_id == owner.owner_id)
            .with_for_update(skip_locked=not wait)
            .execution_options(populate_existing=True)
        )
        if final is None or final.state != SessionState.receiving:
            await self.session.commit()
            return
        ids = [uuid.UUID(i) for i in (final.concat_of or "").split()]
        rows = {
            u.id: u
            for u in await self.session.scalars(
                select(UploadSession).where(UploadSession.id.in_(ids)).execution_options(populate_existing=True)
            )
        }
        partials = [rows[i] for i in ids]
        dead = next((p for p in partials if self._state(p) not in (SessionState.receiving, SessionState.completed)), None)
        if dead is not None:
            await self._fail_final(final, f"partial upload {dead.id} is {self._state(dead)}, so this final upload cannot be joined")
            return
        if any(p.state != SessionState.completed for p in partials):
            await self.session.commit()
            return
        size = sum(p.size for p in partials)
        if size > self.settings.max_file_size:
            await self._fail_final(
                final, f"the partial uploads add up to {size} bytes; the limit is {self.settings.max_file_size} bytes"
            )
            return
        first = partials[0]
        started = time.monotonic()
        try:
            await self._join(owner, partials, final.storage_key)
            log.info(
                "tus partial uploads joined",
                extra={"upload_id": str(final.id), "size": size, "join_ms": round((time.monotonic() - started) * 1000)},
            )
            if first.kind is not None and first.size >= HEAD_BYTES:
                # The first partial's first bytes are the file's: its verdict is the file's.
                detected = Detected(first.kind, first.encoding)
            else:
                detected = detect(await to_thread.run_sync(self._head, final.storage_key, size), complete=size <= HEAD_BYTES)
        except BaseException:
            await self.session.rollback()
            raise
        if detected.kind not in self.settings.allowed_kinds:
            reason = f"this file is not one Sluice accepts; send {ACCEPTED}"
            await self._fail_final(final, reason, release=partials)
            raise UnsupportedType(f"{reason}. The final upload was terminated.")
        final.size, final.offset, final.length_deferred = size, size, False
        final.kind, final.encoding = detected.kind, detected.encoding
        await self.session.flush()
        try:
            # ``complete`` finds the joined object whole in the store and goes straight to the file record.
            await self.complete(owner, final.id, protocol="tus")
        except UnsupportedType:
            await self._release(partials)
            raise
        await self._release(partials)

    async def _fail_final(self, final: UploadSession, reason: str, *, release: list[UploadSession] | None = None) -> None:
        """Close a final upload that will never be joined; partials it does not release go free
        for another final upload (or expire)."""
        if release is None:
            await self.session.execute(
                update(UploadSession)
                .where(UploadSession.concat == "partial", UploadSession.concat_of == str(final.id))
                .values(concat_of=None)
            )
        else:
            final.abort_pending = await self._delete_owed(final.id, final.storage_key)
        await self._set_state(final, SessionState.failed, reason, abort_pending=final.abort_pending)
        if release is not None:
            await self._release(release)

    async def _release(self, partials: list[UploadSession]) -> None:
        """Delete joined partials' objects; what the store cannot delete now the sweeper deletes."""
        for partial in partials:
            await self._delete_owed(partial.id, partial.storage_key)
        await self.session.commit()

    async def _delete_owed(self, upload_id: uuid.UUID, key: str) -> bool:
        """Delete ``key``; while the store is down mark the (closed) upload so that the sweeper
        deletes it later. Whether the delete is owed."""
        try:
            await to_thread.run_sync(self.store.delete, key)
        except StorageError as exc:
            log.warning("object left for the sweeper", extra={"upload_id": str(upload_id), "key": key, "error": str(exc)})
            await self.session.execute(
                update(UploadSession).where(UploadSession.id == upload_id).values(abort_pending=True)
            )
            return True
        return False

    async def _state_with_job(self, owner: Principal, upload_id: uuid.UUID) -> TusState:
        upload = await self._tus(owner, upload_id)
        await self.session.commit()
        self._ensure_alive(upload)
        length = await self._final_length(upload) if upload.concat == "final" else None
        return self._state_of(upload, await self._job_of(upload), length=length)

    async def _final_length(self, final: UploadSession) -> int | None:
        """A final upload's length: known once every partial upload's length is."""
        if not final.length_deferred:
            return final.size
        ids = [uuid.UUID(i) for i in (final.concat_of or "").split()]
        rows = (
            await self.session.execute(
                select(UploadSession.size, UploadSession.length_deferred).where(UploadSession.id.in_(ids))
            )
        ).all()
        await self.session.commit()
        if any(r.length_deferred for r in rows):
            return None
        return sum(r.size for r in rows)

    async def _join(self, owner: Principal, partials: list[UploadSession], key: str) -> None:
        """Join the partials inside the store. S3 joins only pieces of at least 5 MiB (but the last),
        so bytes of partials under that size, and what it takes to round them up to 5 MiB, pass
        through one buffer (under 10 MiB) into temporary objects; every other byte is copied by S3."""
        pieces: list[ObjectRange] = []
        temporary: list[str] = []
        async with PartBuffer(self.memory.claim(owner.owner_id, 2 * MIN_PART)) as pending:

            async def flush() -> None:
                temp = f"{JOIN_PREFIX}{key.rsplit('/', 1)[1]}/{len(temporary)}"
                with pending.view() as data:
                    await to_thread.run_sync(self.store.put, temp, data, JOIN_TYPE)
                temporary.append(temp)
                pieces.append(ObjectRange(temp, 0, pending.length))
                pending.length = 0

            try:
                for number, partial in enumerate(partials, 1):
                    last, size, position = number == len(partials), partial.size, 0
                    if pending.length:
                        need = MIN_PART - pending.length
                        position = size if size <= need or (size - need < MIN_PART and not last) else need
                        await self._read_range(partial.storage_key, 0, position, pending)
                        if pending.length >= MIN_PART:
                            await flush()
                    rest = size - position
                    if rest and (rest >= MIN_PART or last) and not pending.length:
                        pieces.append(ObjectRange(partial.storage_key, position, rest))
                    elif rest:
                        await self._read_range(partial.storage_key, position, rest, pending)
                if pending.length:
                    await flush()
                await to_thread.run_sync(self.store.compose, key, pieces, JOIN_TYPE)
            finally:
                for temp in temporary:
                    try:
                        await to_thread.run_sync(self.store.delete, temp)
                    except StorageError as exc:
                        log.warning("join piece left behind", extra={"key": temp, "error": str(exc)})

    async def _read_range(self, key: str, offset: int, length: int, buffer: PartBuffer) -> None:
        if not length:
            return
        stream = await to_thread.run_sync(self.store.open, key, offset, length)
        try:
            while piece := await to_thread.run_sync(stream.read, GRAIN):
                await buffer.fill(memoryview(piece))
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]

    def _gzipped(self, upload: UploadSession) -> bool:
        """What the first part showed when it passed through this request; else a read of the file's first bytes."""
        seen = self._gzip_seen.get(upload.id)
        return super()._gzipped(upload) if seen is None else seen

    def _head(self, key: str, size: int) -> bytes:
        stream = self.store.open(key, 0, min(size, HEAD_BYTES))
        try:
            return stream.read()
        finally:
            stream.close()
            stream.release_conn()  # type: ignore[attr-defined]

    async def _declare_length(self, upload: UploadSession, length: int) -> None:
        if not upload.length_deferred:
            if length != upload.size:
                raise ServiceError(f"Upload-Length of upload {upload.id} is {upload.size} already; it cannot change")
            return
        self._check_length(length)
        if length < upload.offset:
            raise ServiceError(f"Upload-Length {length} is less than the {upload.offset} bytes already received")
        upload.size, upload.total_chunks, upload.length_deferred = length, math.ceil(length / upload.chunk_size), False

    async def _lock(self, upload: UploadSession) -> uuid.UUID:
        token = uuid.uuid4()
        taken = await self.session.scalar(
            update(UploadSession)
            .where(
                UploadSession.id == upload.id,
                (UploadSession.lock_token.is_(None)) | (UploadSession.locked_until < datetime.now(UTC)),
            )
            .values(lock_token=token, locked_until=self._lease_end())
            .returning(UploadSession.id)
        )
        await self.session.commit()
        if taken is None:
            raise Conflict(
                f"another PATCH is writing to upload {upload.id} right now; wait for it to end, then ask HEAD for the offset"
            )
        return token

    async def _renew(self, upload: UploadSession, token: uuid.UUID) -> None:
        kept = await self.session.scalar(
            update(UploadSession)
            .where(UploadSession.id == upload.id, UploadSession.lock_token == token)
            .values(locked_until=self._lease_end())
            .returning(UploadSession.id)
        )
        await self.session.commit()
        if kept is None:
            raise Conflict(f"upload {upload.id} was taken over by another PATCH; ask HEAD for the offset")

    async def _unlock(self, upload_id: uuid.UUID, token: uuid.UUID) -> None:
        await self.session.rollback()
        await self.session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload_id, UploadSession.lock_token == token)
            .values(lock_token=None, locked_until=None)
        )
        await self.session.commit()

    def _lease_end(self) -> datetime:
        """Long enough for one part to arrive at the slowest pace the idle timeout lets through."""
        return datetime.now(UTC) + timedelta(seconds=2 * self.settings.body_idle_timeout + 60)

    async def _tus(self, owner: Principal, upload_id: uuid.UUID, *, lock: bool = False) -> UploadSession:
        upload = await self._find(owner, upload_id, lock=lock)
        if upload.protocol != "tus":
            raise NotFound(f"no tus upload {upload_id}")
        return upload

    def _ensure_alive(self, upload: UploadSession) -> None:
        """404 once terminated, 410 once expired or refused; a complete upload is still there."""
        state = self._state(upload)
        if state == SessionState.aborted:
            raise NotFound(f"upload {upload.id} was terminated")
        if state == SessionState.expired:
            raise Gone(f"upload {upload.id} expired at {upload.expires_at.isoformat()}; start a new upload")
        if state == SessionState.failed:
            raise Gone(f"upload {upload.id} failed: {upload.error}; start a new upload")

    def _check_length(self, length: int) -> None:
        if length < 1:
            raise Unprocessable("Upload-Length must be at least 1 byte: an empty file has no table")
        if length > self.settings.max_file_size:
            raise PayloadTooLarge(
                f"Upload-Length is {length} bytes; the limit is {self.settings.max_file_size} bytes",
                limit=self.settings.max_file_size,
            )

    def _too_long(self, upload: UploadSession, limit: int) -> ServiceError:
        if upload.length_deferred:
            return PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes", limit=limit)
        return ServiceError(f"the body goes past Upload-Length ({upload.size} bytes); nothing past it is taken")

    def _partial_part_size(self) -> int:
        """Partial uploads come in groups sent at once (tus-js-client's ``parallelUploads``): parts
        of S3's minimum size keep a group's memory near one upload's, while the largest file still
        fits in S3's 10,000 parts."""
        smallest = -(-math.ceil(self.settings.max_file_size / MAX_CHUNKS) // MiB) * MiB
        return min(self.settings.part_size, max(MIN_PART, smallest))

    async def _job_of(self, upload: UploadSession) -> uuid.UUID | None:
        if upload.file_id is None:
            return None
        return (await self._completed(upload)).job_id

    def _state_of(
        self, upload: UploadSession, job_id: uuid.UUID | None = None, *, length: int | None = None
    ) -> TusState:
        concat = upload.concat
        done = upload.state == SessionState.completed
        if concat == "final" and upload.concat_of:
            concat = "final;" + " ".join(f"{BASE}/{i}" for i in upload.concat_of.split())
        if upload.concat == "final" and not done:
            # concatenation-unfinished: no offset until the partial uploads are joined.
            return TusState(
                id=upload.id, offset=None, length=length, metadata=upload.tus_metadata, expires=upload.expires_at, concat=concat
            )
        return TusState(
            id=upload.id,
            offset=upload.offset,
            length=None if upload.length_deferred else upload.size,
            metadata=upload.tus_metadata,
            expires=None if done else upload.expires_at,
            concat=concat,
            file_id=upload.file_id,
            job_id=job_id,
        )


def _text(metadata: dict[str, bytes], key: str) -> str:
    return metadata.get(key, b"").decode("utf-8", errors="replace")


def _process(metadata: dict[str, bytes], default: bool = True) -> bool:
    value = _text(metadata, "process").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise ServiceError("Upload-Metadata process must be true or false (base64 of the word)")
    return value == "true"
