"""tus while the object store is down: what could not be released then (a PATCH's tail object,
the multipart upload, a joined partial's object) is owed, and the sweeper releases it once S3 is back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.resources import Resources
from db.models import SessionState, UploadSession
from db.storage import MinioStore, tus_tail_key
from tests.integration.faults.support import S3Switch
from tests.integration.tus.conftest import BODY, TUS, MiB, csv_bytes, metadata
from workers.maintenance import expire_sessions, release_owed

DATA = csv_bytes(7 * MiB)
"""One whole 5 MiB part and a tail."""


async def _upload_with_tail(client: httpx.AsyncClient) -> tuple[str, uuid.UUID]:
    created = await client.post(
        "/api/v1/tus/",
        headers={**TUS, "Upload-Length": str(len(DATA) + 100), "Upload-Metadata": metadata(filename="t.csv")},
    )
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["location"]).path
    answer = await client.patch(path, content=DATA, headers={**BODY, "Upload-Offset": "0"})
    assert answer.status_code == 204, answer.text
    return path, uuid.UUID(path.rsplit("/", 1)[1])


async def _row(resources: Resources, upload_id: uuid.UUID) -> UploadSession:
    async with resources.sessionmaker() as db:
        return await db.get_one(UploadSession, upload_id)


async def _sweep_until_released(resources: Resources, store: MinioStore, switch: S3Switch, key: str) -> None:
    assert await release_owed(resources.sessionmaker, store) == 0, "released while the store is down"
    switch.up()
    assert await release_owed(resources.sessionmaker, store) >= 1
    assert resources.store.stat(key) is None


async def test_a_tail_left_by_a_termination_during_an_outage_is_deleted_by_the_sweeper(
    outage_client: httpx.AsyncClient, resources: Resources, switch: S3Switch, store_behind_switch: MinioStore
) -> None:
    path, upload_id = await _upload_with_tail(outage_client)
    tail = tus_tail_key(upload_id)
    assert resources.store.stat(tail) is not None
    switch.down()
    answer = await outage_client.delete(path, headers=TUS)
    # The upload is terminated all the same; the store is owed its tail and its multipart upload.
    assert answer.status_code == 204, answer.text
    row = await _row(resources, upload_id)
    assert row.state == SessionState.aborted and row.abort_pending and row.tail_size > 0
    assert resources.store.stat(tail) is not None
    await _sweep_until_released(resources, store_behind_switch, switch, tail)
    row = await _row(resources, upload_id)
    assert not row.abort_pending and row.tail_size == 0
    assert row.s3_upload_id not in {u.upload_id for u in resources.store.list_incomplete(row.storage_key)}


async def test_a_tail_of_an_upload_that_expired_during_an_outage_is_deleted_by_the_sweeper(
    outage_client: httpx.AsyncClient, resources: Resources, switch: S3Switch, store_behind_switch: MinioStore
) -> None:
    _, upload_id = await _upload_with_tail(outage_client)
    tail = tus_tail_key(upload_id)
    async with resources.sessionmaker() as db:
        await db.execute(
            update(UploadSession)
            .where(UploadSession.id == upload_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await db.commit()
    switch.down()
    assert await expire_sessions(resources.sessionmaker, store_behind_switch, resources.settings) >= 1
    row = await _row(resources, upload_id)
    assert row.state == SessionState.expired and row.abort_pending
    await _sweep_until_released(resources, store_behind_switch, switch, tail)


async def test_a_partial_terminated_during_an_outage_is_deleted_by_the_sweeper(
    outage_client: httpx.AsyncClient, resources: Resources, switch: S3Switch, store_behind_switch: MinioStore
) -> None:
    data = csv_bytes(1000)
    created = await outage_client.post(
        "/api/v1/tus/", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Concat": "partial"}
    )
    path = httpx.URL(created.headers["location"]).path
    assert (await outage_client.patch(path, content=data, headers={**BODY, "Upload-Offset": "0"})).status_code == 204
    row = await _row(resources, uuid.UUID(path.rsplit("/", 1)[1]))
    assert resources.store.stat(row.storage_key) is not None
    switch.down()
    assert (await outage_client.delete(path, headers=TUS)).status_code == 204
    await _sweep_until_released(resources, store_behind_switch, switch, row.storage_key)
