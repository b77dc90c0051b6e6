"""Helpers for the event-stream tests: job rows, published events, SSE readers, Redis connections."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import psutil
from httpx_sse import ServerSentEvent, aconnect_sse
from redis.asyncio import Redis
from sqlalchemy import select

from app.auth import hash_key
from app.resources import Resources
from db.models import ApiKey, File, FileKind, FileStatus, Job, JobState
from workers.contracts import JobEvent, job_channel
from workers.progress import publish


async def owner_of(resources: Resources, key: str) -> uuid.UUID:
    async with resources.sessionmaker() as session:
        owner = await session.scalar(select(ApiKey.owner_id).where(ApiKey.key_hash == hash_key(key)))
    assert owner is not None
    return owner


async def insert_job(
    resources: Resources, owner_id: uuid.UUID, *, batch_id: uuid.UUID | None = None, **values: Any
) -> Job:
    """A stored file and a job row for it, as the jobs API would create them."""
    values.setdefault("state", JobState.pending)
    file = File(
        id=uuid.uuid4(),
        owner_id=owner_id,
        original_filename="events.csv",
        filename="events.csv",
        size=1000,
        kind=FileKind.csv,
        status=FileStatus.stored,
        bucket=resources.settings.s3_bucket,
        storage_key=f"files/{owner_id}/events",
    )
    job = Job(
        owner_id=owner_id,
        batch_id=batch_id or uuid.uuid4(),
        file_id=file.id,
        bytes_total=1000,
        **values,
    )
    async with resources.sessionmaker() as session:
        session.add(file)
        await session.flush()
        session.add(job)
        await session.commit()
    return job


async def publish_job(resources: Resources, job: Job, type_: str, state: str, **fields: Any) -> JobEvent:
    event = JobEvent(
        type=type_,
        job_id=str(job.id),
        batch_id=str(job.batch_id),
        file_id=str(job.file_id),
        state=state,
        bytes_total=1000,
        **fields,
    )
    return await publish(resources.redis, job_channel(resources.settings.redis_prefix, job.id), event)


def data(event: ServerSentEvent) -> dict[str, Any]:
    return msgspec.json.decode(event.data)  # type: ignore[no-any-return]


class Events:
    """The events of one open stream, read with a timeout so a missing event fails fast."""

    def __init__(self, response: httpx.Response, events: AsyncIterator[ServerSentEvent]) -> None:
        self.response = response
        self._events = events

    async def next(self, timeout: float = 10.0) -> ServerSentEvent:
        async with asyncio.timeout(timeout):
            return await anext(self._events)

    async def rest(self, timeout: float = 10.0) -> list[ServerSentEvent]:
        """Every event up to the end of the stream."""
        async with asyncio.timeout(timeout):
            return [event async for event in self._events]


@asynccontextmanager
async def events(http: httpx.AsyncClient, path: str, **headers: str) -> AsyncIterator[Events]:
    """An open stream's events; heartbeat comments (which httpx-sse reports as empty events) are skipped."""
    async with aconnect_sse(http, "GET", path, headers=headers) as source:
        assert source.response.status_code == 200, (await source.response.aread()).decode()
        yield Events(source.response, (event async for event in source.aiter_sse() if event.data))


def redis_connections(pid: int, redis_port: int) -> int:
    """TCP connections the process ``pid`` holds open to Redis."""
    return sum(
        1
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == redis_port and conn.status == psutil.CONN_ESTABLISHED
    )


async def clients_of(redis: Redis, pid: int, redis_port: int) -> list[dict[str, Any]]:
    """The entries of Redis ``CLIENT LIST`` that are connections of process ``pid``."""
    ports = {
        conn.laddr.port
        for conn in psutil.Process(pid).net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == redis_port
    }
    return [c for c in await redis.client_list() if int(c["addr"].rsplit(":", 1)[1]) in ports]


async def subscribers(redis: Redis, channel: str) -> int:
    return int(dict(await redis.pubsub_numsub(channel))[channel.encode()])


async def eventually(check: Any, timeout: float = 5.0) -> None:
    """Wait until the async ``check()`` is true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
