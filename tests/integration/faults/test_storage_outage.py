"""The S3 server goes away mid-upload on every upload route: 503 with Retry-After, a record that
says what happened, and no multipart upload left behind once the sweeper runs with S3 back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import select

from app.resources import Resources
from db.models import File, FileStatus, UploadSession
from db.storage import MinioStore
from tests.integration.faults.support import S3Switch
from tests.integration.uploads.support import CHUNK, MiB, csv_bytes, incomplete_keys, send, start
from workers.maintenance import release_owed

DATA = csv_bytes(12 * MiB)
"""More than two 5 MiB parts: the body streams into a multipart upload."""


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert "object store is unavailable" in response.json()["detail"]


async def _streaming_row(resources: Resources, filename: str, timeout: float = 30.0) -> File:
    """The ``receiving`` row of ``filename`` once its multipart upload is recorded on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with resources.sessionmaker() as db:
            row = await db.scalar(select(File).where(File.filename == filename, File.s3_upload_id.is_not(None)))
        if row is not None:
            assert row.status == FileStatus.receiving
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"no multipart upload was recorded for {filename}")


async def _row(resources: Resources, file_id: uuid.UUID) -> File:
    async with resources.sessionmaker() as db:
        return await db.get_one(File, file_id)


async def _cut_midway(
    switch: S3Switch, resources: Resources, filename: str, before: bytes, after: bytes
) -> tuple[AsyncIterator[bytes], asyncio.Task[File]]:
    """A body that stops after ``before`` (plus the first 6 MiB of the file), waits for S3 to be
    switched off, then sends the rest; the task yields the row it streamed into."""
    cut = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield before + DATA[: 6 * MiB]
        await cut.wait()
        for offset in range(6 * MiB, len(DATA), MiB):
            yield DATA[offset : offset + MiB]
        yield after

    async def switch_off() -> File:
        row = await _streaming_row(resources, filename)
        switch.down()
        cut.set()
        return row

    return body(), asyncio.create_task(switch_off())


async def _released_once_s3_is_back(
    resources: Resources, switch: S3Switch, down_store: MinioStore, key: str, file_id: uuid.UUID
) -> None:
    # While S3 is down the sweeper fails quietly and keeps what it owes.
    assert await release_owed(resources.sessionmaker, down_store) == 0
    assert (await _row(resources, file_id)).s3_upload_id is not None
    switch.up()
    assert incomplete_keys(resources, key) == [key]
    assert await release_owed(resources.sessionmaker, down_store) >= 1
    assert incomplete_keys(resources, key) == []
    assert (await _row(resources, file_id)).s3_upload_id is None


async def test_single_shot_put(
    switch: S3Switch, outage_client: httpx.AsyncClient, resources: Resources, store_behind_switch: MinioStore
) -> None:
    name = f"put-{uuid.uuid4().hex[:8]}.csv"
    body, cutting = await _cut_midway(switch, resources, name, b"", b"")
    response = await outage_client.put(f"/api/v1/files/{name}?process=false", content=body)
    streamed = await cutting

    _assert_unavailable(response)
    row = await _row(resources, streamed.id)
    assert row.status == FileStatus.failed
    assert "object store failed while the file arrived" in (row.error or "")
    listed = (await outage_client.get(f"/api/v1/files/{row.id}")).json()
    assert listed["status"] == "failed" and listed["error"] == row.error
    await _released_once_s3_is_back(resources, switch, store_behind_switch, row.storage_key, row.id)


async def test_batch_post(
    switch: S3Switch, outage_client: httpx.AsyncClient, resources: Resources, store_behind_switch: MinioStore
) -> None:
    name = f"batch-{uuid.uuid4().hex[:8]}.csv"
    boundary = "sluice-outage-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    body, cutting = await _cut_midway(switch, resources, name, head, f"\r\n--{boundary}--\r\n".encode())
    response = await outage_client.post(
        "/api/v1/files?process=false",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    streamed = await cutting

    _assert_unavailable(response)
    (item,) = response.json()["results"]
    assert item["status"] == "failed" and item["status_code"] == 503
    row = await _row(resources, streamed.id)
    assert row.status == FileStatus.failed and "object store" in (row.error or "")
    await _released_once_s3_is_back(resources, switch, store_behind_switch, row.storage_key, row.id)


async def test_chunked_session_chunks_complete_and_delete(
    switch: S3Switch, outage_client: httpx.AsyncClient, resources: Resources, store_behind_switch: MinioStore
) -> None:
    data, small = csv_bytes(2 * CHUNK + 100), csv_bytes(1000, seed=1)
    kept, dropped = await start(outage_client, data, process=False), await start(outage_client, data, process=False)
    whole = await start(outage_client, small, process=False)
    for session, index in ((kept, 0), (kept, 1), (dropped, 0)):
        assert (await send(outage_client, session["id"], data, index)).status_code == 200
    assert (await send(outage_client, whole["id"], small, 0)).status_code == 200
    async with resources.sessionmaker() as db:
        dropped_key = (await db.get_one(UploadSession, uuid.UUID(dropped["id"]))).storage_key

    switch.down()
    _assert_unavailable(await send(outage_client, kept["id"], data, 2))
    state = (await outage_client.get(f"/api/v1/uploads/{kept['id']}")).json()
    assert state["state"] == "receiving" and state["received_chunks"] == [0, 1]
    _assert_unavailable(await outage_client.post(f"/api/v1/uploads/{whole['id']}/complete"))
    assert (await outage_client.get(f"/api/v1/uploads/{whole['id']}")).json()["state"] == "receiving"

    # Deleting a session needs no S3: it is closed now and its multipart upload released later.
    assert (await outage_client.delete(f"/api/v1/uploads/{dropped['id']}")).status_code == 204
    assert (await outage_client.get(f"/api/v1/uploads/{dropped['id']}")).json()["state"] == "aborted"
    assert await release_owed(resources.sessionmaker, store_behind_switch) == 0

    switch.up()
    assert incomplete_keys(resources, dropped_key) == [dropped_key]
    assert await release_owed(resources.sessionmaker, store_behind_switch) >= 1
    assert incomplete_keys(resources, dropped_key) == []
    async with resources.sessionmaker() as db:
        assert not (await db.get_one(UploadSession, uuid.UUID(dropped["id"]))).abort_pending

    # The sessions that met the outage go on where they stopped.
    assert (await send(outage_client, kept["id"], data, 2)).status_code == 200
    for session in (kept, whole):
        done = await outage_client.post(f"/api/v1/uploads/{session['id']}/complete")
        assert done.status_code == 200, done.text


async def test_delete_of_a_stored_file(
    switch: S3Switch, outage_client: httpx.AsyncClient, resources: Resources, store_behind_switch: MinioStore
) -> None:
    stored = await outage_client.put("/api/v1/files/kept.csv?process=false", content=DATA[: MiB])
    assert stored.status_code == 201, stored.text
    file_id = uuid.UUID(stored.json()["id"])
    key = (await _row(resources, file_id)).storage_key

    switch.down()
    assert (await outage_client.delete(f"/api/v1/files/{file_id}")).status_code == 204
    assert (await outage_client.get(f"/api/v1/files/{file_id}")).json()["status"] == "deleted"
    assert (await outage_client.get(f"/api/v1/files/{file_id}/content")).status_code == 410
    row = await _row(resources, file_id)
    assert row.purge_pending and resources.store.stat(key) is not None
    assert await release_owed(resources.sessionmaker, store_behind_switch) == 0

    switch.up()
    assert await release_owed(resources.sessionmaker, store_behind_switch) >= 1
    assert resources.store.stat(key) is None
    assert not (await _row(resources, file_id)).purge_pending
