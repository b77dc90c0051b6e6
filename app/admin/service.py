"""What an admin key may see and do across owners."""

from __future__ import annotations

from anyio import to_thread
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.schemas import ActiveUpload, Stats, Tally
from db.models import ApiKey, File, Job, SessionState, UploadChunk, UploadSession
from db.storage import ObjectStore


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
