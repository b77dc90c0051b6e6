"""tus concatenation: partial uploads sent in parallel, joined by a final upload inside the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from minio import Minio
from sqlalchemy import update

from app.resources import Resources
from db.models import UploadSession
from tests.integration.tus.conftest import TUS, MiB, create, csv_bytes, metadata, send, stored
from workers.maintenance import expire_sessions


async def _partial(client: httpx.AsyncClient, data: bytes) -> str:
    path = await create(client, len(data), extra={"Upload-Concat": "partial"})
    answer = await send(client, path, 0, data)
    assert answer.status_code == 204, answer.text
    assert "sluice-file-id" not in answer.headers
    return path


async def _final(client: httpx.AsyncClient, paths: list[str]) -> httpx.Response:
    return await client.post(
        "/api/v1/tus/",
        headers={**TUS, "Upload-Concat": "final;" + " ".join(paths), "Upload-Metadata": metadata(filename="joined.csv")},
    )


async def test_partials_sent_in_parallel_are_joined_in_the_store(client: httpx.AsyncClient, resources: Resources) -> None:
    data = csv_bytes(13 * MiB)
    cuts = [0, 6 * MiB, 11 * MiB, len(data)]
    paths = await asyncio.gather(*(_partial(client, data[a:b]) for a, b in zip(cuts, cuts[1:])))
    head = await client.head(paths[0], headers=TUS)
    assert head.headers["upload-concat"] == "partial"
    final = await _final(client, list(paths))
    assert final.status_code == 201, final.text
    assert final.headers["upload-offset"] == str(len(data))
    assert final.headers["sluice-job-id"]
    file_id = final.headers["sluice-file-id"]
    record = (await client.get(f"/api/v1/files/{file_id}")).json()
    assert record["filename"] == "joined.csv" and record["kind"] == "csv" and record["size"] == len(data)
    assert await stored(client, file_id) == data
    location = httpx.URL(final.headers["location"]).path
    head = await client.head(location, headers=TUS)
    assert head.headers["upload-concat"] == "final;" + " ".join(paths)
    assert head.headers["upload-length"] == str(len(data))
    # The partials' own objects are gone once joined.
    async with resources.sessionmaker() as session:
        first = await session.get_one(UploadSession, paths[0].rsplit("/", 1)[1])
    assert resources.store.stat(first.storage_key) is None


async def test_small_partials_are_joined_when_the_file_fits_one_part(client: httpx.AsyncClient) -> None:
    data = csv_bytes(300_000)
    cuts = [0, 70_000, 150_000, 290_000, len(data)]
    paths = [await _partial(client, data[a:b]) for a, b in zip(cuts, cuts[1:])]
    final = await _final(client, paths)
    assert final.status_code == 201, final.text
    assert await stored(client, final.headers["sluice-file-id"]) == data


async def test_a_patch_to_a_final_upload_answers_403(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    final = await _final(client, [await _partial(client, data)])
    assert final.status_code == 201
    answer = await send(client, httpx.URL(final.headers["location"]).path, len(data), b"1\n")
    assert answer.status_code == 403


async def test_an_unfinished_partial_cannot_be_joined(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data), extra={"Upload-Concat": "partial"})
    await send(client, path, 0, data[:100])
    final = await _final(client, [path])
    assert final.status_code == 400
    assert "finish it first" in final.json()["detail"]


async def test_a_partial_joins_one_final_only(client: httpx.AsyncClient) -> None:
    path = await _partial(client, csv_bytes(1000))
    assert (await _final(client, [path])).status_code == 201
    again = await _final(client, [path])
    assert again.status_code == 400
    assert "already part of another final upload" in again.json()["detail"]


async def test_partials_of_any_size_are_joined_with_identical_bytes(client: httpx.AsyncClient, resources: Resources) -> None:
    data = csv_bytes(17 * MiB)
    # Under 5 MiB, over, a run of small ones, a big one after small ones, and a small last one.
    cuts = [0, 1 * MiB, 7 * MiB, 8 * MiB, 9 * MiB + 5, 10 * MiB, 16 * MiB, len(data)]
    paths = await asyncio.gather(*(_partial(client, data[a:b]) for a, b in zip(cuts, cuts[1:])))
    final = await _final(client, list(paths))
    assert final.status_code == 201, final.text
    assert await stored(client, final.headers["sluice-file-id"]) == data
    settings = resources.settings
    s3 = Minio(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, secure=settings.s3_secure)
    assert not list(s3.list_objects(settings.s3_bucket, prefix="tus-joins/", recursive=True))


async def test_three_partials_of_3_mib_are_joined(client: httpx.AsyncClient) -> None:
    data = csv_bytes(10 * MiB)
    cuts = [0, 3 * MiB, 6 * MiB, 9 * MiB, len(data)]
    paths = await asyncio.gather(*(_partial(client, data[a:b]) for a, b in zip(cuts, cuts[1:])))
    final = await _final(client, list(paths))
    assert final.status_code == 201, final.text
    assert await stored(client, final.headers["sluice-file-id"]) == data


async def test_a_partial_no_final_joined_is_deleted_when_it_expires(client: httpx.AsyncClient, resources: Resources) -> None:
    path = await _partial(client, csv_bytes(1000))
    upload_id = path.rsplit("/", 1)[1]
    async with resources.sessionmaker() as session:
        upload = await session.get_one(UploadSession, upload_id)
        assert resources.store.stat(upload.storage_key) is not None
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == upload.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    await expire_sessions(resources.sessionmaker, resources.store, resources.settings)
    async with resources.sessionmaker() as session:
        upload = await session.get_one(UploadSession, upload_id)
    assert upload.state == "expired"
    assert resources.store.stat(upload.storage_key) is None
    assert (await _final(client, [path])).status_code == 400
