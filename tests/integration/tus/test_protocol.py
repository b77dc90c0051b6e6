"""tus 1.0 rules, one test each, over HTTP against the real API, PostgreSQL and S3."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.resources import Resources
from db.models import UploadSession
from tests.integration.tus.conftest import BODY, TUS, MiB, create, csv_bytes, metadata, send, stored
from tests.support.servers import ApiServer
from workers.maintenance import expire_sessions


def _id(path: str) -> str:
    return path.rsplit("/", 1)[1]


async def test_options_lists_version_extensions_size_and_checksums(client: httpx.AsyncClient) -> None:
    answer = await client.options("/api/v1/tus/")
    assert answer.status_code == 204
    assert answer.headers["tus-version"] == "1.0.0"
    extensions = set(answer.headers["tus-extension"].split(","))
    assert {"creation", "creation-with-upload", "creation-defer-length", "termination", "checksum", "expiration", "concatenation"} <= extensions
    assert int(answer.headers["tus-max-size"]) > 0
    assert set(answer.headers["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256", "md5"}


async def test_another_version_answers_412_with_tus_version(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={"Tus-Resumable": "0.2.2", "Upload-Length": "10"})
    assert answer.status_code == 412
    assert answer.headers["tus-version"] == "1.0.0"
    assert "Tus-Resumable: 1.0.0" in answer.json()["detail"]
    missing = await client.post("/api/v1/tus/", headers={"Upload-Length": "10"})
    assert missing.status_code == 412


async def test_creation_answers_201_with_location_and_expiry(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": "100"})
    assert answer.status_code == 201, answer.text
    assert answer.headers["tus-resumable"] == "1.0.0"
    location = httpx.URL(answer.headers["location"])
    assert location.path.startswith("/api/v1/tus/") and location.is_absolute_url
    expires = datetime.strptime(answer.headers["upload-expires"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC)
    assert expires > datetime.now(UTC)


async def test_creation_needs_a_length_or_deferral(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers=TUS)
    assert answer.status_code == 400
    assert "Upload-Length" in answer.json()["detail"]
    assert answer.headers["tus-resumable"] == "1.0.0"


async def test_creation_over_the_maximum_answers_413(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": str(10**15)})
    assert answer.status_code == 413
    assert answer.headers["tus-resumable"] == "1.0.0"


async def test_bad_metadata_answers_400(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "filename ***"})
    assert answer.status_code == 400
    assert "base64" in answer.json()["detail"]


async def test_head_answers_offset_length_metadata_and_no_store(client: httpx.AsyncClient) -> None:
    meta = metadata(filename="report.csv", filetype="text/csv")
    path = await create(client, 1000, extra={"Upload-Metadata": meta})
    answer = await client.head(path, headers=TUS)
    assert answer.status_code == 200
    assert answer.headers["upload-offset"] == "0"
    assert answer.headers["upload-length"] == "1000"
    assert answer.headers["upload-metadata"] == meta
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["tus-resumable"] == "1.0.0"


async def test_patch_needs_the_offset_content_type(client: httpx.AsyncClient) -> None:
    path = await create(client, 100)
    answer = await client.patch(
        path, content=b"id\n1\n", headers={**TUS, "Upload-Offset": "0", "Content-Type": "text/csv"}
    )
    assert answer.status_code == 415
    assert "application/offset+octet-stream" in answer.json()["detail"]
    assert answer.headers["tus-resumable"] == "1.0.0"


async def test_patch_at_another_offset_answers_409(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data))
    assert (await send(client, path, 0, data[:100])).status_code == 204
    answer = await send(client, path, 50, data[50:200])
    assert answer.status_code == 409
    assert "100" in answer.json()["detail"]
    assert (await client.head(path, headers=TUS)).headers["upload-offset"] == "100"


async def test_patch_answers_204_with_the_new_offset_and_the_last_one_creates_the_file(
    client: httpx.AsyncClient,
) -> None:
    data = csv_bytes(200_000)
    path = await create(client, len(data), extra={"Upload-Metadata": metadata(filename="../dir/sales.csv")})
    first = await send(client, path, 0, data[:70_000])
    assert first.status_code == 204
    assert first.headers["upload-offset"] == "70000"
    assert "upload-expires" in first.headers
    assert "sluice-file-id" not in first.headers
    last = await send(client, path, 70_000, data[70_000:])
    assert last.status_code == 204
    assert last.headers["upload-offset"] == str(len(data))
    file_id = last.headers["sluice-file-id"]
    assert last.headers["sluice-job-id"]
    record = (await client.get(f"/api/v1/files/{file_id}")).json()
    assert record["status"] == "stored" and record["filename"] == "sales.csv" and record["kind"] == "csv"
    assert await stored(client, file_id) == data
    head = await client.head(path, headers=TUS)
    assert head.headers["upload-offset"] == str(len(data))


async def test_small_patches_across_parts_keep_their_tails_in_the_store(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(12 * MiB)
    path = await create(client, len(data))
    offset = 0
    for size in (3 * MiB, 4 * MiB, 1, 5 * MiB - 1):
        answer = await send(client, path, offset, data[offset : offset + size])
        assert answer.status_code == 204, answer.text
        offset += size
        assert (await client.head(path, headers=TUS)).headers["upload-offset"] == str(offset)
    tail = resources.store.stat(f"tus-tails/{_id(path)}")
    assert tail is not None and tail.size == offset % (5 * MiB)
    last = await send(client, path, offset, data[offset:])
    assert last.status_code == 204, last.text
    assert await stored(client, last.headers["sluice-file-id"]) == data
    assert resources.store.stat(f"tus-tails/{_id(path)}") is None


def _checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def test_checksum_mismatch_answers_460_and_the_bytes_do_not_count(client: httpx.AsyncClient) -> None:
    data = csv_bytes(7 * MiB)
    path = await create(client, len(data))
    assert (await send(client, path, 0, data[:1000], **{"Upload-Checksum": _checksum("sha1", data[:1000])})).status_code == 204
    # Past a part boundary: the part went to S3, and still does not count.
    wrong = await send(client, path, 1000, data[1000 : 6 * MiB], **{"Upload-Checksum": _checksum("sha1", b"other")})
    assert wrong.status_code == 460
    assert "Upload-Checksum" in wrong.json()["detail"]
    assert wrong.headers["tus-resumable"] == "1.0.0"
    assert (await client.head(path, headers=TUS)).headers["upload-offset"] == "1000"
    retry = await send(client, path, 1000, data[1000:], **{"Upload-Checksum": _checksum("sha256", data[1000:])})
    assert retry.status_code == 204, retry.text
    assert await stored(client, retry.headers["sluice-file-id"]) == data


async def test_md5_checksum_is_accepted(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data))
    answer = await send(client, path, 0, data, **{"Upload-Checksum": _checksum("md5", data)})
    assert answer.status_code == 204
    assert answer.headers["upload-offset"] == str(len(data))


async def test_unsupported_checksum_algorithm_answers_400(client: httpx.AsyncClient) -> None:
    path = await create(client, 100)
    answer = await send(client, path, 0, b"id\n", **{"Upload-Checksum": "crc32 AAAA"})
    assert answer.status_code == 400
    assert "sha1" in answer.json()["detail"]


async def test_deferred_length_is_declared_by_a_later_patch(client: httpx.AsyncClient) -> None:
    data = csv_bytes(100_000)
    path = await create(client, None)
    head = await client.head(path, headers=TUS)
    assert head.headers["upload-defer-length"] == "1" and "upload-length" not in head.headers
    assert (await send(client, path, 0, data[:80_000])).status_code == 204
    last = await send(client, path, 80_000, data[80_000:], **{"Upload-Length": str(len(data))})
    assert last.status_code == 204, last.text
    assert await stored(client, last.headers["sluice-file-id"]) == data
    head = await client.head(path, headers=TUS)
    assert head.headers["upload-length"] == str(len(data))


async def test_a_body_past_upload_length_answers_400_and_keeps_the_offset(client: httpx.AsyncClient) -> None:
    path = await create(client, 10)
    answer = await send(client, path, 0, b"id,name\n1,2\n3,4\n")
    assert answer.status_code == 400
    assert "Upload-Length" in answer.json()["detail"]
    assert (await client.head(path, headers=TUS)).headers["upload-offset"] == "0"


async def test_termination_answers_204_and_releases_the_upload(client: httpx.AsyncClient, resources: Resources) -> None:
    data = csv_bytes(6 * MiB)
    path = await create(client, len(data) + 10)
    assert (await send(client, path, 0, data)).status_code == 204
    async with resources.sessionmaker() as session:
        upload = await session.get_one(UploadSession, _id(path))
    assert resources.store.stat(f"tus-tails/{_id(path)}") is not None
    answer = await client.delete(path, headers=TUS)
    assert answer.status_code == 204
    assert answer.headers["tus-resumable"] == "1.0.0"
    assert (await client.head(path, headers=TUS)).status_code == 404
    assert (await send(client, path, len(data), b"1")).status_code == 404
    pending = [u.upload_id for u in resources.store.list_incomplete(upload.storage_key)]
    assert upload.s3_upload_id not in pending
    assert resources.store.stat(f"tus-tails/{_id(path)}") is None


async def test_expired_upload_answers_410_and_the_sweeper_releases_it(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data) + 100)
    assert (await send(client, path, 0, data)).status_code == 204
    async with resources.sessionmaker() as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == _id(path))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    assert (await client.head(path, headers=TUS)).status_code == 410
    gone = await send(client, path, len(data), b"1\n")
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
    await expire_sessions(resources.sessionmaker, resources.store, resources.settings)
    async with resources.sessionmaker() as session:
        upload = await session.get_one(UploadSession, _id(path))
    assert upload.state == "expired"
    assert upload.s3_upload_id not in [u.upload_id for u in resources.store.list_incomplete(upload.storage_key)]
    assert resources.store.stat(f"tus-tails/{_id(path)}") is None


async def test_two_patches_at_once_the_second_answers_409(client: httpx.AsyncClient) -> None:
    data = csv_bytes(100_000)
    path = await create(client, len(data))
    release = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield data[:50_000]
        await release.wait()
        yield data[50_000:60_000]

    first = asyncio.create_task(
        client.patch(path, content=slow(), headers={**BODY, "Upload-Offset": "0"})
    )
    await asyncio.sleep(1.0)
    second = await send(client, path, 0, data[:10])
    assert second.status_code == 409
    assert "another PATCH" in second.json()["detail"]
    release.set()
    answer = await first
    assert answer.status_code == 204
    assert answer.headers["upload-offset"] == "60000"


async def test_method_override_serves_patch_head_and_delete_sent_as_post(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data) + 5)
    patched = await client.post(
        path, content=data, headers={**BODY, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"}
    )
    assert patched.status_code == 204, patched.text
    assert patched.headers["upload-offset"] == str(len(data))
    head = await client.post(path, headers={**TUS, "X-HTTP-Method-Override": "HEAD"})
    assert head.headers["upload-offset"] == str(len(data))
    deleted = await client.post(path, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert deleted.status_code == 204
    assert (await client.head(path, headers=TUS)).status_code == 404


async def test_another_owners_upload_answers_404(client: httpx.AsyncClient, other_client: httpx.AsyncClient) -> None:
    path = await create(client, 100)
    assert (await other_client.head(path, headers=TUS)).status_code == 404
    assert (await send(other_client, path, 0, b"id\n")).status_code == 404
    assert (await other_client.delete(path, headers=TUS)).status_code == 404
    assert (await client.head(path, headers=TUS)).status_code == 200


async def test_no_bearer_key_answers_401(api: object, client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": "10", "Authorization": ""})
    assert answer.status_code == 401


async def test_a_file_of_another_type_is_refused_with_415_and_the_upload_ends(client: httpx.AsyncClient) -> None:
    data = b"%PDF-1.7\n" + bytes(range(256)) * 400
    path = await create(client, len(data) + 1000)
    answer = await send(client, path, 0, data)
    assert answer.status_code == 415
    assert "CSV" in answer.json()["detail"]
    head = await client.head(path, headers=TUS)
    assert head.status_code == 410


async def test_creation_with_upload_stores_the_first_bytes(client: httpx.AsyncClient) -> None:
    data = csv_bytes(50_000)
    answer = await client.post(
        "/api/v1/tus/",
        content=data[:20_000],
        headers={**BODY, "Upload-Length": str(len(data)), "Upload-Metadata": metadata(filename="x.csv")},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["upload-offset"] == "20000"
    path = httpx.URL(answer.headers["location"]).path
    last = await send(client, path, 20_000, data[20_000:])
    assert await stored(client, last.headers["sluice-file-id"]) == data


async def test_process_false_in_metadata_creates_no_job(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data), extra={"Upload-Metadata": metadata(filename="a.csv", process="false")})
    answer = await send(client, path, 0, data)
    assert answer.status_code == 204
    assert "sluice-job-id" not in answer.headers
    record = (await client.get(f"/api/v1/files/{answer.headers['sluice-file-id']}")).json()
    assert record["process"] is False


async def test_progress_is_on_the_upload_events_stream(client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data))
    await send(client, path, 0, data)
    async with client.stream("GET", f"/api/v1/uploads/{_id(path)}/events") as stream:
        assert stream.status_code == 200
        text = ""
        async for piece in stream.aiter_text():
            text += piece
            if "completed" in text:
                break
    assert "completed" in text


async def test_browsers_of_configured_origins_may_speak_tus(resources: Resources, key: str) -> None:
    origin = "https://uploader.example"
    server = ApiServer(resources.settings.replace(cors_origins=(origin,)))
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            preflight = await http.options(
                "/api/v1/tus/00000000-0000-0000-0000-000000000000",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "PATCH",
                    "Access-Control-Request-Headers": "authorization, tus-resumable, upload-offset, upload-checksum, content-type",
                },
            )
            assert preflight.status_code in (200, 204), preflight.text
            assert "PATCH" in preflight.headers["access-control-allow-methods"]
            allowed = preflight.headers["access-control-allow-headers"].lower()
            assert {"tus-resumable", "upload-offset", "upload-checksum"} <= {h.strip() for h in allowed.split(",")}
            created = await http.post(
                "/api/v1/tus/", headers={**TUS, "Upload-Length": "10", "Origin": origin, "Authorization": f"Bearer {key}"}
            )
            assert created.status_code == 201
            exposed = {h.strip() for h in created.headers["access-control-expose-headers"].lower().split(",")}
            assert {"location", "upload-offset", "upload-expires", "tus-resumable", "sluice-file-id"} <= exposed
    finally:
        server.stop()


async def test_the_chunk_api_refuses_a_tus_upload(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/v1/tus/", headers={**TUS, "Upload-Length": "100"})
    upload_id = _id(answer.headers["location"])
    chunk = await client.put(f"/api/v1/uploads/{upload_id}/chunks/0", content=b"a,b\n")
    assert chunk.status_code == 409 and "PATCH /api/v1/tus/" in chunk.json()["detail"]
    complete = await client.post(f"/api/v1/uploads/{upload_id}/complete")
    assert complete.status_code == 409 and "PATCH /api/v1/tus/" in complete.json()["detail"]
    assert (await client.head(f"/api/v1/tus/{upload_id}", headers=TUS)).headers["upload-offset"] == "0"


async def test_filetype_metadata_is_the_stored_objects_type_and_a_bad_one_answers_422(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(1000)
    path = await create(client, len(data), extra={"Upload-Metadata": metadata(filename="a.csv", filetype="text/csv; charset=utf-8")})
    answer = await send(client, path, 0, data)
    assert answer.status_code == 204, answer.text
    async with resources.sessionmaker() as session:
        upload = await session.get_one(UploadSession, _id(path))
    stat = resources.store._client.stat_object(resources.store.bucket, upload.storage_key)
    assert stat.content_type == "text/csv; charset=utf-8"
    refused = await client.post(
        "/api/v1/tus/", headers={**TUS, "Upload-Length": "10", "Upload-Metadata": metadata(filetype="not a type")}
    )
    assert refused.status_code == 422
    assert "media type" in refused.json()["detail"]


async def test_a_gzipped_csv_is_stored_as_gzip_in_one_patch_or_several(client: httpx.AsyncClient) -> None:
    data = gzip.compress(csv_bytes(300_000))
    for cuts in ([0, len(data)], [0, 70_000, len(data)]):
        path = await create(client, len(data), filename="rows.csv.gz")
        for a, b in zip(cuts, cuts[1:]):
            answer = await send(client, path, a, data[a:b])
            assert answer.status_code == 204, answer.text
        record = (await client.get(f"/api/v1/files/{answer.headers['sluice-file-id']}")).json()
        assert record["kind"] == "csv" and record["content_type"] == "application/gzip", record
        assert await stored(client, record["id"]) == data
