"""What an admin key may see and do across owners."""

from __future__ import annotations

import uuid
from collections import Counter

from anyio import to_thread
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.schemas import ActiveUpload, OwnerStorage, Stats, Tally
from app.auth import Principal
from app.errors import Conflict, NotFound
from app.tus.service import TusService
from app.uploads.schemas import SessionRecord
from app.uploads.service import UploadService
from db.models import ApiKey, File, FileStatus, Job, SessionState, UploadChunk, UploadSession
from db.storage import ObjectStore


ADMIN_CANCEL = "cancelled by an administrator"
"""The reason an admin-cancelled session records, so its owner sees who stopped it."""


class AdminService:
    def __init__(self, session: AsyncSession, store: ObjectStore) -> None:
        self.session = session
        self.store = store

    async def stats(self) -> Stats:
        files = {
            str(status): Tally(count, int(size or 0))
            for status, count, size in await self.session.execute(
                select(File.status, func.count(), func.sum(File.size)).group_by(File.status)
            )
        }
        jobs = {
            str(state): count
            for state, count in await self.session.execute(select(Job.state, func.count()).group_by(Job.state))
        }
        rows_stored = await self.session.scalar(select(func.coalesce(func.sum(Job.rows_ok), 0)).where(Job.state == "completed"))
        receiving = UploadSession.state == SessionState.receiving
        sessions, expected = (
            await self.session.execute(select(func.count(), func.coalesce(func.sum(UploadSession.size), 0)).where(receiving))
        ).one()
        received = await self.session.scalar(
            select(func.coalesce(func.sum(UploadChunk.size), 0)).join(UploadSession).where(receiving)
        )
        keys, owners = (
            await self.session.execute(
                select(func.count(), func.count(ApiKey.owner_id.distinct())).where(ApiKey.revoked_at.is_(None))
            )
        ).one()
        incomplete = await to_thread.run_sync(lambda: sum(1 for _ in self.store.list_incomplete()))
        return Stats(
            files=files,
            jobs=jobs,
            rows_stored=int(rows_stored or 0),
            uploads_receiving=sessions,
            upload_bytes_received=int(received or 0),
            upload_bytes_expected=int(expected),
            incomplete_multipart_uploads=incomplete,
            bucket=self.store.bucket,
            api_keys=keys,
            owners=owners,
        )

    async def active_uploads(self, *, offset: int, limit: int) -> tuple[list[ActiveUpload], int]:
        """Chunked sessions still receiving, of every owner, the longest idle first."""
        receiving = UploadSession.state == SessionState.receiving
        total = await self.session.scalar(select(func.count()).select_from(UploadSession).where(receiving))
        chunks = (
            select(
                UploadChunk.session_id,
                func.count().label("received"),
                func.sum(UploadChunk.size).label("bytes"),
            )
            .group_by(UploadChunk.session_id)
            .subquery()
        )
        rows = await self.session.execute(
            select(UploadSession, chunks.c.received, chunks.c.bytes)
            .outerjoin(chunks, chunks.c.session_id == UploadSession.id)
            .where(receiving)
            .order_by(UploadSession.expires_at, UploadSession.id)
            .offset(offset)
            .limit(limit)
        )
        items = [
            ActiveUpload(
                id=upload.id,
                owner_id=upload.owner_id,
                filename=upload.filename,
                size=upload.size,
                total_chunks=upload.total_chunks,
                received_chunks=received or 0,
                bytes_received=int(size or 0),
                created_at=upload.created_at,
                expires_at=upload.expires_at,
            )
            for upload, received, size in rows
        ]
        return items, total or 0

    async def storage(self, *, offset: int, limit: int) -> tuple[list[OwnerStorage], int]:
        """Per owner: stored bytes, live sessions' bytes, incomplete multipart uploads; the largest first."""
        stored = {
            owner: (count, int(size or 0))
            for owner, count, size in await self.session.execute(
                select(File.owner_id, func.count(), func.sum(File.size))
                .where(File.status == FileStatus.stored)
                .group_by(File.owner_id)
            )
        }
        received = (
            select(UploadChunk.session_id, func.sum(UploadChunk.size).label("bytes"))
            .group_by(UploadChunk.session_id)
            .subquery()
        )
        sessions = {
            owner: (count, int(size or 0))
            for owner, count, size in await self.session.execute(
                select(
                    UploadSession.owner_id,
                    func.count(),
                    # A tus upload's tail (bytes after its last whole part) is in its offset, not in a chunk.
                    func.sum(
                        case(
                            (UploadSession.protocol == "tus", UploadSession.offset),
                            else_=func.coalesce(received.c.bytes, 0),
                        )
                    ),
                )
                .outerjoin(received, received.c.session_id == UploadSession.id)
                .where(UploadSession.state == SessionState.receiving)
                .group_by(UploadSession.owner_id)
            )
        }
        incomplete = await to_thread.run_sync(self._incomplete_by_owner)
        owners = sorted(
            stored.keys() | sessions.keys() | incomplete.keys(),
            key=lambda o: (-stored.get(o, (0, 0))[1], -sessions.get(o, (0, 0))[1], str(o)),
        )
        items = [
            OwnerStorage(
                owner_id=owner,
                files_stored=stored.get(owner, (0, 0))[0],
                bytes_stored=stored.get(owner, (0, 0))[1],
                uploads_receiving=sessions.get(owner, (0, 0))[0],
                bytes_in_sessions=sessions.get(owner, (0, 0))[1],
                incomplete_multipart_uploads=incomplete.get(owner, 0),
            )
            for owner in owners[offset : offset + limit]
        ]
        return items, len(owners)

    def _incomplete_by_owner(self) -> Counter[uuid.UUID]:
        """Storage keys are ``files/<owner id>/<file id>``, so each upload's key names its owner."""
        owners: Counter[uuid.UUID] = Counter()
        for upload in self.store.list_incomplete("files/"):
            try:
                owners[uuid.UUID(upload.key.split("/")[1])] += 1
            except (IndexError, ValueError):
                continue  # not a key Sluice made
        return owners

    async def cancel_upload(
        self, admin: Principal, uploads: UploadService, tus: TusService, upload_id: uuid.UUID
    ) -> SessionRecord:
        """Abort any owner's receiving session through the owner's own abort path (a tus DELETE for
        a tus upload, which also drops its tail), releasing its multipart upload (or leaving it to
        the sweeper while the store is down)."""
        upload = await self.session.scalar(select(UploadSession).where(UploadSession.id == upload_id))
        if upload is None:
            raise NotFound(f"no upload session {upload_id}; list them with GET /api/v1/admin/uploads")
        if upload.state != SessionState.receiving:
            raise Conflict(f"upload session {upload_id} is already {upload.state}; only a receiving session can be cancelled")
        # The owner's path, on the owner's behalf: it finds the session by its owner.
        owner = Principal(owner_id=upload.owner_id, key_id=admin.key_id, is_admin=True)
        if upload.protocol == "tus":
            await tus.terminate(owner, upload_id, reason=ADMIN_CANCEL)
        else:
            await uploads.abort(owner, upload_id, reason=ADMIN_CANCEL)
        return await uploads.get(owner, upload_id)
