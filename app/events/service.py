"""Event streams: the owner check, the snapshot a stream starts from, then live events to the end.

Order on connect: subscribe first, then read the snapshot, so an event published in between is
both in the snapshot and delivered live, and the live copy is dropped as not newer.
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio
from litestar.response import ServerSentEventMessage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import STREAM_PATH, Principal, stream_token
from app.errors import NotFound, Unavailable, Unprocessable
from app.events.fanout import EventChannels, Watcher
from app.events.feeds import JOB_TERMINAL, UPLOAD_TERMINAL, BatchFeed, ChannelFeed, Feed, Frame
from app.events.schemas import StreamLink
from db.models import Job, SessionState, UploadChunk, UploadSession
from db.settings import Settings
from workers.contracts import JobEvent, UploadEvent, job_channel, upload_channel

Stream = AsyncIterator[ServerSentEventMessage]
Loader = Callable[[], Awaitable[Feed]]
RETRY_MS = 3000
"""How long a browser waits before reconnecting a dropped stream."""
ROW_CHECK_BEATS = 4
"""An idle stream reads its database rows again every this many heartbeats."""
RECONNECT_MS = (250, 2000)
"""When a stopping server ends a stream, the client reconnects after a random wait in this range, so
thousands of watchers do not all arrive at the next process in the same instant."""
RECONNECT_DATA = b'{"detail":"this API process is stopping; reconnect (with Last-Event-ID) to continue"}'


@dataclass
class Prepared(ServerSentEventMessage):
    """A message already encoded: sent as is."""

    wire: bytes = b""

    def encode(self) -> bytes:
        return self.wire


@functools.lru_cache(maxsize=1024)
def wire(event: str, id_: int, data: bytes) -> bytes:
    """An event as it goes on the wire; the watchers of one channel share it, so it is encoded once."""
    return ServerSentEventMessage(data=data, event=event, id=id_).encode()


HEARTBEAT = Prepared(wire=ServerSentEventMessage(data=None, comment="heartbeat").encode())


def reconnect(last_sent: int) -> ServerSentEventMessage:
    """The last event of a stream its server ends: the id stays the last one sent, so the client resumes there."""
    return ServerSentEventMessage(
        data=RECONNECT_DATA, event="reconnect", id=last_sent, retry=random.randint(*RECONNECT_MS)
    )


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit():
        raise Unprocessable("Last-Event-ID must be the id of an event this stream sent: a whole number, 0 or more")
    return int(value)


def job_row_event(job: Job) -> JobEvent:
    state = str(job.state)
    return JobEvent(
        type=state if state in JOB_TERMINAL else "state",
        job_id=str(job.id),
        batch_id=str(job.batch_id),
        file_id=str(job.file_id),
        state=state,
        rows_ok=job.rows_ok,
        rows_rejected=job.rows_rejected,
        bytes_read=job.bytes_read,
        bytes_total=job.bytes_total,
        progress=job.progress,
        rate=job.rate,
        eta_s=job.eta_s,
        error=job.error,
        dataset_table=job.dataset_table,
    )


class EventService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], channels: EventChannels, settings: Settings):
        self.sessionmaker = sessionmaker
        self.channels = channels
        self.settings = settings

    async def job_stream(self, owner: Principal, job_id: uuid.UUID, last_event_id: str | None) -> Stream | None:
        """Events of one job; ``None`` when the client has already received its terminal event."""
        return await self._open(functools.partial(self._job_feed, owner, job_id), last_event_id)

    async def batch_stream(self, owner: Principal, batch_id: uuid.UUID, last_event_id: str | None) -> Stream | None:
        """Events of every job of a batch, aggregated; ``None`` when the client has seen the end."""
        return await self._open(functools.partial(self._batch_feed, owner, batch_id), last_event_id)

    async def upload_stream(self, owner: Principal, upload_id: uuid.UUID, last_event_id: str | None) -> Stream | None:
        """Events of one chunked upload session; ``None`` when the client has seen the end."""
        return await self._open(functools.partial(self._upload_feed, owner, upload_id), last_event_id)

    async def link(self, owner: Principal, path: str, ttl_s: int) -> StreamLink:
        """A URL that opens the event stream at ``path`` without a header, for ``ttl_s`` seconds."""
        found = STREAM_PATH.match(path)
        if found is None:
            raise Unprocessable(
                "path must be an event stream, /api/v1/jobs/{id}/events, /api/v1/batches/{id}/events or"
                f" /api/v1/uploads/{{id}}/events with a lower-case id (add /ws for the WebSocket), not {path!r}"
            )
        loaders = {"jobs": self._job_feed, "batches": self._batch_feed, "uploads": self._upload_feed}
        # A link to a stream this key cannot open is refused now, not when a browser follows it.
        await loaders[found.group(1)](owner, uuid.UUID(found.group(2)))
        if not self.settings.secret_key:
            raise Unavailable("stream links are off: this API process has no SLUICE_SECRET_KEY to sign them")
        expires = int(time.time()) + ttl_s
        token = stream_token(self.settings.secret_key, owner.key_id, path, expires)
        return StreamLink(url=f"{path}?token={token}", expires_at=datetime.fromtimestamp(expires, UTC))

    async def _job_feed(self, owner: Principal, job_id: uuid.UUID) -> Feed:
        async with self.sessionmaker() as session:
            job = await session.scalar(select(Job).where(Job.id == job_id, Job.owner_id == owner.owner_id))
        if job is None:
            raise NotFound(f"no job {job_id}; list your jobs with GET /api/v1/jobs")
        return self._job(job)

    async def _batch_feed(self, owner: Principal, batch_id: uuid.UUID) -> Feed:
        async with self.sessionmaker() as session:
            jobs = (
                await session.scalars(
                    select(Job)
                    .where(Job.batch_id == batch_id, Job.owner_id == owner.owner_id)
                    .order_by(Job.created_at, Job.id)
                )
            ).all()
        if not jobs:
            raise NotFound(f"no batch {batch_id}; a batch id is the batch_id of POST /api/v1/jobs or of a job")
        return BatchFeed(str(batch_id), [self._job(job) for job in jobs])

    async def _upload_feed(self, owner: Principal, upload_id: uuid.UUID) -> Feed:
        async with self.sessionmaker() as session:
            upload = await session.scalar(
                select(UploadSession).where(UploadSession.id == upload_id, UploadSession.owner_id == owner.owner_id)
            )
            if upload is None:
                raise NotFound(f"no upload session {upload_id}; start one with POST /api/v1/uploads")
            received, bytes_received = (
                await session.execute(
                    select(func.count(), func.coalesce(func.sum(UploadChunk.size), 0)).where(
                        UploadChunk.session_id == upload.id
                    )
                )
            ).one()
            job_id = None
            if upload.file_id is not None:
                job_id = await session.scalar(
                    select(Job.id)
                    .where(Job.file_id == upload.file_id, Job.owner_id == owner.owner_id)
                    .order_by(Job.created_at.desc())
                    .limit(1)
                )
        state = str(upload.state)
        if upload.state == SessionState.completed:
            received, bytes_received = upload.total_chunks, upload.size
        row = UploadEvent(
            type=state if state in UPLOAD_TERMINAL else "state",
            upload_id=str(upload.id),
            state=state,
            received_chunks=received,
            total_chunks=upload.total_chunks,
            bytes_received=bytes_received,
            size=upload.size,
            file_id=str(upload.file_id) if upload.file_id else None,
            job_id=str(job_id) if job_id else None,
            error=upload.error,
        )
        return ChannelFeed(upload_channel(self.settings.redis_prefix, upload.id), row, UPLOAD_TERMINAL)

    async def _open(self, load: Loader, header: str | None) -> Stream | None:
        last_event_id = parse_last_event_id(header)
        feed = await load()
        if last_event_id is not None:
            feed.start(await self._snapshots(feed))
            if feed.terminal and feed.seq <= last_event_id:
                return None
        return self._stream(feed, last_event_id, load)

    async def _stream(self, feed: Feed, last_event_id: int | None, load: Loader) -> Stream:
        """The snapshot, then live events until the terminal one, with comment heartbeats when idle.

        Ids never go below ``last_event_id``, and each is above the one before.
        """
        watcher = await self.channels.watch(feed.channels)
        try:
            feed.start(await self._snapshots(feed))
            sent = max(feed.seq, last_event_id or 0)
            yield ServerSentEventMessage(data=feed.data(), event="snapshot", id=sent, retry=RETRY_MS)
            if feed.terminal:
                yield ServerSentEventMessage(data=feed.data(), event=feed.state, id=sent)
                return
            watcher.beat_every(self.settings.heartbeat)
            beats = 0
            while True:
                payload = await watcher.next_event()
                if payload is None:
                    return
                if payload == Watcher.CLOSING:
                    yield reconnect(sent)
                    return
                if payload == watcher.HEARTBEAT:
                    yield HEARTBEAT
                    beats += 1
                    # Pub/sub keeps nothing: whatever it lost (a reconnect of the shared subscriber)
                    # is in the snapshot keys, so an idle stream catches up within one heartbeat.
                    snapshots = await self._snapshots(feed)
                    frames = feed.resync(snapshots)
                    if not frames and beats % ROW_CHECK_BEATS == 0:
                        # An end the database has but Redis never got (a publish that failed) ends
                        # the stream too; a row that is gone ends it without a word.
                        try:
                            fresh = await load()
                        except NotFound:
                            return
                        fresh.start(snapshots)
                        if fresh.terminal:
                            feed, frames = fresh, [Frame(fresh.state, fresh.seq, fresh.data())]
                else:
                    frames = feed.apply(payload)
                for frame in frames:
                    sent = max(frame.id, sent + 1)
                    yield Prepared(data=frame.data, event=frame.event, id=sent, wire=wire(frame.event, sent, frame.data))
                if feed.terminal:
                    return
        finally:
            # The client may be gone and this task cancelled; the subscription must be released anyway.
            watcher.stop_beating()
            with anyio.CancelScope(shield=True):
                await self.channels.unsubscribe(watcher, feed.channels)

    def _job(self, job: Job) -> ChannelFeed[JobEvent]:
        return ChannelFeed(job_channel(self.settings.redis_prefix, job.id), job_row_event(job), JOB_TERMINAL)

    async def _snapshots(self, feed: Feed) -> list[bytes | None]:
        return list(await self.channels.redis.mget(feed.keys))
