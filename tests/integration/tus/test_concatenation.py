"""tus concatenation: partial uploads sent in parallel, joined by a final upload inside the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from minio import Minio
from sqlalchemy import select, update

from app.resources import Resources
from db.models import Job, UploadSession
from tests.integration.tus.conftest import TUS, MiB, create, csv_bytes, metadata, send, stored
from workers.maintenance import expire_sessions, release_owed


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


async def test_a_partial_that_was_terminated_cannot_be_joined(client: httpx.AsyncClient) -> None:
    path = await create(client, 1000, extra={"Upload-Concat": "partial"})
    assert (await client.delete(path, headers=TUS)).status_code == 204
    final = await _final(client, [path])
    assert final.status_code == 400
    assert "aborted" in final.json()["detail"]


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


def _id(path: str) -> str:
    return path.rsplit("/", 1)[1]


async def test_options_announces_concatenation_unfinished(client: httpx.AsyncClient) -> None:
    answer = await client.options("/api/v1/tus/")
    assert "concatenation-unfinished" in answer.headers["tus-extension"].split(",")


async def test_a_final_created_before_its_partials_finish_is_joined_by_the_last_patch(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(8 * MiB)
    cut = 6 * MiB
    first = await create(client, cut, extra={"Upload-Concat": "partial"})
    second = await create(client, len(data) - cut, extra={"Upload-Concat": "partial"})
    assert (await send(client, first, 0, data[: 2 * MiB + 3])).status_code == 204

    final = await _final(client, [first, second])
    assert final.status_code == 201, final.text
    assert "upload-offset" not in final.headers
    assert "sluice-file-id" not in final.headers
    location = httpx.URL(final.headers["location"]).path
    head = await client.head(location, headers=TUS)
    assert head.status_code == 200
    assert "upload-offset" not in head.headers
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["upload-concat"] == f"final;{first} {second}"
    assert head.headers["upload-expires"]

    # The partials go on (in any order); the final upload waits for the last one.
    answer = await send(client, second, 0, data[cut:])
    assert answer.status_code == 204, answer.text
    assert "upload-offset" not in (await client.head(location, headers=TUS)).headers
    answer = await send(client, first, 2 * MiB + 3, data[2 * MiB + 3 : cut])
    assert answer.status_code == 204, answer.text

    head = await client.head(location, headers=TUS)
    assert head.headers["upload-offset"] == str(len(data))
    file_id = head.headers["sluice-file-id"]
    record = (await client.get(f"/api/v1/files/{file_id}")).json()
    assert record["filename"] == "joined.csv" and record["kind"] == "csv" and record["size"] == len(data)
    assert await stored(client, file_id) == data
    async with resources.sessionmaker() as session:
        # Its processing job was created with the file, as for any upload.
        assert await session.scalar(select(Job.id).where(Job.file_id == file_id)) is not None
        partials = [await session.get_one(UploadSession, _id(p)) for p in (first, second)]
    # Joined in the store: the partials' objects are gone, nothing was gathered in tus-joins/.
    assert all(resources.store.stat(p.storage_key) is None for p in partials)


async def test_an_unfinished_final_with_a_deferred_partial_tells_its_length_once_known(client: httpx.AsyncClient) -> None:
    data = csv_bytes(3000)
    first = await _partial(client, data[:1000])
    second = await create(client, None, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first, second])
    assert final.status_code == 201, final.text
    location = httpx.URL(final.headers["location"]).path
    head = await client.head(location, headers=TUS)
    assert "upload-length" not in head.headers and "upload-offset" not in head.headers
    assert (await send(client, second, 0, data[1000:2000], **{"Upload-Length": str(len(data) - 1000)})).status_code == 204
    head = await client.head(location, headers=TUS)
    assert head.headers["upload-length"] == str(len(data)) and "upload-offset" not in head.headers
    assert (await send(client, second, 1000, data[2000:])).status_code == 204
    head = await client.head(location, headers=TUS)
    assert head.headers["upload-offset"] == str(len(data))
    assert await stored(client, head.headers["sluice-file-id"]) == data


async def test_terminating_a_partial_fails_the_unfinished_final(client: httpx.AsyncClient) -> None:
    data = csv_bytes(2000)
    first = await _partial(client, data[:1000])
    second = await create(client, 1000, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first, second])
    location = httpx.URL(final.headers["location"]).path
    assert (await client.delete(second, headers=TUS)).status_code == 204
    head = await client.head(location, headers=TUS)
    assert head.status_code == 410
    assert head.headers["tus-resumable"] == "1.0.0"
    # The partial that was complete is free again: another final upload may join it.
    again = await _final(client, [first])
    assert again.status_code == 201, again.text
    assert await stored(client, again.headers["sluice-file-id"]) == data[:1000]


async def test_terminating_an_unfinished_final_frees_its_partials(client: httpx.AsyncClient) -> None:
    data = csv_bytes(2000)
    first = await create(client, 1000, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first])
    location = httpx.URL(final.headers["location"]).path
    assert (await client.delete(location, headers=TUS)).status_code == 204
    assert (await client.head(location, headers=TUS)).status_code == 404
    assert (await send(client, first, 0, data[:1000])).status_code == 204
    again = await _final(client, [first])
    assert again.status_code == 201, again.text
    assert again.headers["upload-offset"] == "1000"


async def test_an_unfinished_final_of_another_type_fails_when_joined(client: httpx.AsyncClient) -> None:
    first = await create(client, 4096, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first])
    location = httpx.URL(final.headers["location"]).path
    answer = await send(client, first, 0, b"\x00\x01\x02\x03" * 1024)
    # The partial upload itself is complete; the verdict is the final upload's.
    assert answer.status_code == 204, answer.text
    head = await client.head(location, headers=TUS)
    assert head.status_code == 410


async def test_a_patch_to_an_unfinished_final_answers_403(client: httpx.AsyncClient) -> None:
    first = await create(client, 1000, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first])
    answer = await send(client, httpx.URL(final.headers["location"]).path, 0, b"1\n")
    assert answer.status_code == 403


async def test_an_expired_unfinished_final_frees_its_partials(client: httpx.AsyncClient, resources: Resources) -> None:
    data = csv_bytes(1000)
    first = await create(client, len(data), extra={"Upload-Concat": "partial"})
    final = await _final(client, [first])
    location = httpx.URL(final.headers["location"]).path
    async with resources.sessionmaker() as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == _id(location))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    await expire_sessions(resources.sessionmaker, resources.store, resources.settings)
    assert (await client.head(location, headers=TUS)).status_code == 410
    assert (await send(client, first, 0, data)).status_code == 204
    again = await _final(client, [first])
    assert again.status_code == 201, again.text
    assert await stored(client, again.headers["sluice-file-id"]) == data


async def test_a_final_that_a_partial_is_late_for_lives_while_the_partial_moves(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(2000)
    first = await create(client, len(data), extra={"Upload-Concat": "partial"})
    final = await _final(client, [first])
    location = httpx.URL(final.headers["location"]).path
    soon = datetime.now(UTC) + timedelta(seconds=30)
    async with resources.sessionmaker() as session:
        await session.execute(update(UploadSession).where(UploadSession.id == _id(location)).values(expires_at=soon))
        await session.commit()
    assert (await send(client, first, 0, data[:500])).status_code == 204
    async with resources.sessionmaker() as session:
        waiting = await session.get_one(UploadSession, _id(location))
    assert waiting.expires_at > soon + timedelta(minutes=10)


async def test_the_sweeper_keeps_a_claimed_partials_object_until_its_final_is_joined(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(3000)
    first = await _partial(client, data[:1000])
    second = await create(client, len(data) - 1000, extra={"Upload-Concat": "partial"})
    final = await _final(client, [first, second])
    # As if the first partial's tail could not be deleted when it completed (S3 was down then).
    async with resources.sessionmaker() as session:
        await session.execute(update(UploadSession).where(UploadSession.id == _id(first)).values(abort_pending=True))
        await session.commit()
        key = (await session.get_one(UploadSession, _id(first))).storage_key
    assert await release_owed(resources.sessionmaker, resources.store) >= 1
    assert resources.store.stat(key) is not None
    assert (await send(client, second, 0, data[1000:])).status_code == 204
    head = await client.head(httpx.URL(final.headers["location"]).path, headers=TUS)
    assert await stored(client, head.headers["sluice-file-id"]) == data
    assert resources.store.stat(key) is None
