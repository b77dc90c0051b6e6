"""A single-shot upload whose API process dies is failed within the stall timeout, and its
multipart upload released; one that keeps moving, however slowly, is left alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import select

from app.resources import Resources
from db.models import File, FileStatus
from db.settings import Settings
from tests.integration.faults.support import STALL, S3Switch
from tests.integration.uploads.support import MiB, csv_bytes, incomplete_keys
from tests.support.servers import ApiServer
from workers.maintenance import fail_stalled_files, release_owed

DATA = csv_bytes(12 * MiB, seed=2)


@pytest.fixture
def stall_settings(resources: Resources) -> Settings:
    return resources.settings.replace(upload_stall_timeout=STALL)


@pytest.fixture
def stall_api(stall_settings: Settings) -> Iterator[ApiServer]:
    server = ApiServer(stall_settings)
    yield server
    server.stop()


async def _row(resources: Resources, filename: str) -> File | None:
    async with resources.sessionmaker() as db:
        return await db.scalar(select(File).where(File.filename == filename))


async def test_a_killed_api_process_fails_its_upload_within_the_stall_timeout(
    stall_api: ApiServer, stall_settings: Settings, resources: Resources, key: str
) -> None:
    name = f"killed-{uuid.uuid4().hex[:8]}.csv"
    never = asyncio.Event()
    """Set only once the API is dead, so the body ends and the client sees the cut connection."""

    async def body() -> AsyncIterator[bytes]:
        yield DATA[: 6 * MiB]
        await never.wait()

    async with httpx.AsyncClient(base_url=stall_api.url, headers={"Authorization": f"Bearer {key}"}) as http:
        upload = asyncio.create_task(http.put(f"/api/v1/files/{name}?process=false", content=body(), timeout=60))
        deadline = time.monotonic() + 30
        while (row := await _row(resources, name)) is None or row.s3_upload_id is None:
            assert time.monotonic() < deadline, "the multipart upload was never recorded"
            await asyncio.sleep(0.05)
        stall_api.process.kill()
        killed = time.monotonic()
        never.set()
        with contextlib.suppress(httpx.HTTPError):
            await asyncio.wait_for(upload, 30)
    assert incomplete_keys(resources, row.storage_key) == [row.storage_key]

    await fail_stalled_files(resources.sessionmaker, stall_settings)
    assert (await _row(resources, name)).status == FileStatus.receiving  # type: ignore[union-attr]
    while (row := await _row(resources, name)).status == FileStatus.receiving:  # type: ignore[union-attr]
        assert time.monotonic() - killed < STALL + 5, "the dead upload was not failed within the stall timeout"
        await fail_stalled_files(resources.sessionmaker, stall_settings)
        await asyncio.sleep(0.2)
    assert row.status == FileStatus.failed
    assert f"no progress for {STALL} s" in (row.error or "")

    assert await release_owed(resources.sessionmaker, resources.store) >= 1
    assert incomplete_keys(resources, row.storage_key) == []
    assert (await _row(resources, name)).s3_upload_id is None  # type: ignore[union-attr]


async def test_a_slow_live_upload_outlasts_the_stall_timeout(
    switch: S3Switch, outage_client: httpx.AsyncClient, stall_settings: Settings, resources: Resources
) -> None:
    name = f"slow-{uuid.uuid4().hex[:8]}.csv"
    piece = 256 * 1024

    async def body() -> AsyncIterator[bytes]:
        for offset in range(0, len(DATA), piece):
            yield DATA[offset : offset + piece]
            await asyncio.sleep(0.1)

    async def sweep() -> None:
        while True:
            await fail_stalled_files(resources.sessionmaker, stall_settings)
            await asyncio.sleep(0.3)

    sweeper = asyncio.create_task(sweep())
    started = time.monotonic()
    try:
        response = await outage_client.put(f"/api/v1/files/{name}?process=false", content=body(), timeout=60)
    finally:
        sweeper.cancel()
    assert time.monotonic() - started > STALL
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["status"] == "stored" and record["size"] == len(DATA)
    assert record["error"] is None, "the sweeper failed a live upload"
