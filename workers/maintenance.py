"""Upkeep of uploads: expire idle sessions, fail single-shot uploads whose API process died, release
what the object store owes (multipart uploads and objects it could not remove while it was down)
and abort multipart uploads nobody owns.

The logic is plain async functions over ``(sessionmaker, store, settings)`` so tests call them
directly; the actors at the bottom run them on a worker's clients, scheduled by
``workers.scheduler.PERIODIC``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import dramatiq
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from db.models import File, FileStatus, SessionState, UploadSession
from db.settings import Settings
from db.storage import ObjectStore, StorageError, tus_tail_key
from workers.contracts import MAINTENANCE_QUEUE, UploadEvent, upload_channel
from workers.metrics import record_uploads_ended
from workers.middleware import current_clients
from workers.progress import publish

log = logging.getLogger("sluice.maintenance")

BATCH = 200
ORPHAN_GRACE = timedelta(hours=1)
"""An incomplete upload younger than this is left alone: its owner row may not be committed yet."""
KEY_PREFIX = "files/"
"""Every object Sluice writes lives under ``files/<owner id>/<file id>``."""


async def expire_sessions(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    settings: Settings,
    *,
    redis: Redis | None = None,
    now: datetime | None = None,
) -> int:
    """Mark sessions idle past ``expires_at`` as expired and release their multipart uploads."""
    now = now or datetime.now(UTC)
    expired = 0
    while True:
        closed: list[UploadSession] = []
        async with sessionmaker() as session:
            # SKIP LOCKED: a session being completed right now is not expired under its feet,
            # and two workers running this at once share the work instead of waiting.
            due = await session.scalars(
                select(UploadSession)
                .where(UploadSession.state == SessionState.receiving, UploadSession.expires_at <= now)
                .order_by(UploadSession.expires_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
            for upload in due:
                if upload.concat == "final":
                    await _free_partials(session, upload)
                try:
                    if upload.s3_upload_id:
                        await asyncio.to_thread(store.abort, upload.storage_key, upload.s3_upload_id)
                    if upload.protocol == "tus":
                        await asyncio.to_thread(store.delete, tus_tail_key(upload.id))
                        upload.tail_size = 0
                except StorageError as exc:
                    log.warning("expired upload left for release", extra={"upload_id": str(upload.id), "error": str(exc)})
                    upload.abort_pending = True
                upload.state = SessionState.expired
                upload.error = (
                    f"no chunk arrived for {settings.session_ttl} s; the session expired at {upload.expires_at.isoformat()}"
                )
                closed.append(upload)
            await session.commit()
        expired += len(closed)
        for upload in closed:
            record_uploads_ended("tus" if upload.protocol == "tus" else "chunked", "expired")
        if redis is not None:
            for upload in closed:
                await _announce(redis, settings, upload)
        if len(closed) < BATCH:
            return expired + await _expire_unjoined_partials(sessionmaker, store, now)


async def _free_partials(session: AsyncSession, final: UploadSession) -> None:
    """A tus final upload that expired before its partial uploads were all complete lets them go:
    they can join another final upload, or expire themselves."""
    await session.execute(
        update(UploadSession)
        .where(UploadSession.concat == "partial", UploadSession.concat_of == str(final.id))
        .values(concat_of=None)
    )


async def _release_tus(session: AsyncSession, store: ObjectStore, upload: UploadSession) -> None:
    """What a closed tus upload may still owe the store: its tail object, the object of a partial
    upload that was joined or terminated, and the joined file of a final upload that was refused,
    while the store was down."""
    await asyncio.to_thread(store.delete, tus_tail_key(upload.id))
    upload.tail_size = 0
    joined = False
    if upload.concat == "partial" and upload.concat_of is not None:
        # Claimed by a final upload: its object goes once that one is joined (or refused), not before.
        final = await session.get(UploadSession, uuid.UUID(upload.concat_of))
        joined = final is None or final.state != SessionState.receiving
    if (upload.concat is not None and upload.state != SessionState.completed) or joined:
        await asyncio.to_thread(store.delete, upload.storage_key)


async def _expire_unjoined_partials(
    sessionmaker: async_sessionmaker[AsyncSession], store: ObjectStore, now: datetime
) -> int:
    """Delete the objects of tus partial uploads that no final upload joined before they expired."""
    async with sessionmaker() as session:
        due = list(
            await session.scalars(
                select(UploadSession)
                .where(
                    UploadSession.protocol == "tus",
                    UploadSession.concat == "partial",
                    UploadSession.concat_of.is_(None),
                    UploadSession.state == SessionState.completed,
                    UploadSession.expires_at <= now,
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for upload in due:
            try:
                await asyncio.to_thread(store.delete, upload.storage_key)
            except StorageError as exc:
                log.warning("expired partial upload left for the next run", extra={"upload_id": str(upload.id), "error": str(exc)})
                continue
            upload.state = SessionState.expired
            upload.error = "no final upload joined this partial upload before it expired"
        await session.commit()
    return len(due)


async def fail_stalled_files(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime | None = None
) -> int:
    """Fail single-shot uploads left ``receiving`` by an API process that stopped mid-body: a live
    upload moves ``touched_at`` several times per ``upload_stall_timeout``.

    Their multipart uploads stay recorded on the row, which ``release_owed`` then releases.
    """
    now = now or datetime.now(UTC)
    timeout = settings.upload_stall_timeout
    async with sessionmaker() as session:
        result = await session.execute(
            update(File)
            .where(
                File.status == FileStatus.receiving,
                func.coalesce(File.touched_at, File.updated_at) <= now - timedelta(seconds=timeout),
            )
            .values(
                status=FileStatus.failed,
                error=(
                    f"the upload stopped before the whole file arrived: no progress for {timeout} s "
                    "(the API process receiving it stopped); send the file again"
                ),
            )
        )
        await session.commit()
    return result.rowcount or 0


async def release_owed(sessionmaker: async_sessionmaker[AsyncSession], store: ObjectStore) -> int:
    """Release what the store could not release when it was down: multipart uploads of closed
    files and sessions, and objects of deleted files. Stops at the first failure (the store is
    still down); the next run goes on."""
    released = 0
    try:
        while True:
            async with sessionmaker() as session:
                files = list(
                    await session.scalars(
                        select(File)
                        .where(
                            (File.s3_upload_id.is_not(None) & (File.status != FileStatus.receiving))
                            | File.purge_pending
                        )
                        .limit(BATCH)
                        .with_for_update(skip_locked=True)
                    )
                )
                for file in files:
                    if file.s3_upload_id is not None and file.status != FileStatus.receiving:
                        await asyncio.to_thread(store.abort, file.storage_key, file.s3_upload_id)
                        file.s3_upload_id = None
                    if file.purge_pending:
                        await asyncio.to_thread(store.delete, file.storage_key)
                        file.purge_pending = False
                    await session.commit()
                    released += 1
                uploads = list(
                    await session.scalars(
                        select(UploadSession)
                        .where(UploadSession.abort_pending)
                        .limit(BATCH)
                        .with_for_update(skip_locked=True)
                    )
                )
                for upload in uploads:
                    if upload.s3_upload_id:
                        await asyncio.to_thread(store.abort, upload.storage_key, upload.s3_upload_id)
                    if upload.protocol == "tus":
                        await _release_tus(session, store, upload)
                    upload.abort_pending = False
                    await session.commit()
                    released += 1
            if len(files) < BATCH and len(uploads) < BATCH:
                return released
    except StorageError as exc:
        log.warning("the object store is still failing; owed releases wait for the next run", extra={"error": str(exc)})
        return released


async def abort_orphans(
    sessionmaker: async_sessionmaker[AsyncSession],
    store: ObjectStore,
    settings: Settings,
    *,
    grace: timedelta = ORPHAN_GRACE,
    now: datetime | None = None,
) -> int:
    """Abort incomplete multipart uploads that no receiving session or in-flight upload owns."""
    now = now or datetime.now(UTC)
    incomplete = await asyncio.to_thread(lambda: list(store.list_incomplete(KEY_PREFIX)))
    if not incomplete:
        return 0
    async with sessionmaker() as session:
        live_sessions = set(
            await session.scalars(
                select(UploadSession.s3_upload_id).where(
                    UploadSession.s3_upload_id.in_([u.upload_id for u in incomplete]),
                    UploadSession.state == SessionState.receiving,
                )
            )
        )
        # A single-shot upload streams into a multipart upload under its ``receiving`` file row.
        streaming = set(
            await session.scalars(
                select(File.storage_key).where(
                    File.storage_key.in_([u.key for u in incomplete]),
                    File.status == FileStatus.receiving,
                    func.coalesce(File.touched_at, File.updated_at)
                    > now - timedelta(seconds=settings.upload_stall_timeout),
                )
            )
        )
    aborted = 0
    for upload in incomplete:
        if upload.upload_id in live_sessions or upload.key in streaming:
            continue
        if upload.initiated is not None and upload.initiated > now - grace:
            continue
        await asyncio.to_thread(store.abort, upload.key, upload.upload_id)
        log.info("aborted an orphaned multipart upload", extra={"key": upload.key, "initiated": str(upload.initiated)})
        aborted += 1
    return aborted


async def _announce(redis: Redis, settings: Settings, upload: UploadSession) -> None:
    event = UploadEvent(
        type="expired",
        upload_id=str(upload.id),
        state=str(upload.state),
        total_chunks=upload.total_chunks,
        size=upload.size,
        error=upload.error,
    )
    try:
        await publish(redis, upload_channel(settings.redis_prefix, upload.id), event)
    except Exception as exc:  # noqa: BLE001 - progress is best effort; the session is expired either way
        log.warning("could not publish an expiry", extra={"upload_id": str(upload.id), "error": str(exc)})


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=600_000, max_retries=0)
async def expire_upload_sessions() -> None:
    """Expire idle chunked sessions; ``sweep_stalled_uploads`` releases what this one could not."""
    clients = current_clients()
    count = await expire_sessions(clients.sessionmaker, clients.store, clients.settings, redis=clients.redis)
    if count:
        log.info("expired upload sessions", extra={"count": count})


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=600_000, max_retries=0)
async def sweep_stalled_uploads() -> None:
    """Fail single-shot uploads that stopped moving, then release what the store owes."""
    clients = current_clients()
    stalled = await fail_stalled_files(clients.sessionmaker, clients.settings)
    record_uploads_ended("single", "failed", stalled)
    released = await release_owed(clients.sessionmaker, clients.store)
    if stalled or released:
        log.info("swept uploads", extra={"stalled_files": stalled, "released": released})


@dramatiq.actor(queue_name=MAINTENANCE_QUEUE, time_limit=600_000, max_retries=0)
async def abort_orphan_uploads() -> None:
    """Abort multipart uploads left behind by crashes (no session or upload owns them)."""
    clients = current_clients()
    count = await abort_orphans(clients.sessionmaker, clients.store, clients.settings)
    if count:
        log.info("aborted orphaned multipart uploads", extra={"count": count})
