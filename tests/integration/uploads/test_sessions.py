"""Chunked, resumable upload sessions through the real API into the real object store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from sqlalchemy import func, select

from app.errors import Unprocessable
from app.resources import Resources
from app.uploads.service import plan_chunks
from db.models import File, Job, UploadChunk, UploadSession
from db.settings import Settings
from db.storage import PartInfo
from tests.integration.uploads.support import (
    CHUNK,
    MiB,
    chunk_of,
    csv_bytes,
    incomplete_keys,
    read_object,
    send,
    session_key,
    sha256,
    start,
)
from tests.support.servers import ApiServer
from workers.contracts import UploadEvent, upload_channel

# Three chunks: two of 5 MiB and a short last one.
DATA = csv_bytes(2 * CHUNK + 12_345)


@pytest.fixture(scope="module")
def second_api(resources: Resources) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings)
    yield server
    server.stop()


async def test_out_of_order_parallel_chunks_read_back_identical(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    session = await start(client, DATA, filename="sales 2024.csv", sha256=sha256(DATA), process=False)
    assert session["total_chunks"] == 3
    assert session["chunk_size"] == CHUNK
    assert session["state"] == "receiving"
    assert session["missing_chunks"] == [0, 1, 2]

    responses = await asyncio.gather(*(send(client, session["id"], DATA, i) for i in (2, 0, 1)))
    assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]
    assert {r.json()["index"]: r.json()["sha256"] for r in responses} == {
        i: sha256(chunk_of(DATA, i)) for i in range(3)
    }
    assert sorted(r.json()["received"] for r in responses)[-1] == 3

    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["received_chunks"] == [0, 1, 2]
    assert state["missing_chunks"] == []
    assert state["bytes_received"] == len(DATA)

    done = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    record = done.json()
    assert record["status"] == "stored"
    assert record["kind"] == "csv"
    assert record["size"] == len(DATA)
    assert record["sha256"] == sha256(DATA)
    assert record["filename"] == "sales 2024.csv"
    assert record["upload_id"] == session["id"]
    assert record["job_id"] is None
    assert read_object(resources, record["storage_key"]) == DATA
    assert (await client.get(f"/api/v1/files/{record['id']}/content")).content == DATA
    assert incomplete_keys(resources, record["storage_key"]) == []

    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["state"] == "completed"
    assert state["file_id"] == record["id"]


async def test_repeated_chunk_replaces_the_part(client: httpx.AsyncClient, resources: Resources) -> None:
    session = await start(client, DATA, process=False)
    wrong = csv_bytes(CHUNK, seed=7)
    assert (await client.put(f"/api/v1/uploads/{session['id']}/chunks/1", content=wrong)).status_code == 200
    for index in (0, 1, 2):
        response = await send(client, session["id"], DATA, index)
        assert response.status_code == 200, response.text
    assert response.json()["received"] == 3

    record = (await client.post(f"/api/v1/uploads/{session['id']}/complete")).json()
    assert read_object(resources, record["storage_key"]) == DATA
    async with resources.sessionmaker() as db:
        rows = await db.scalar(select(func.count()).where(UploadChunk.session_id == uuid.UUID(session["id"])))
    assert rows == 3


async def test_complete_with_missing_chunks_is_409_listing_them(client: httpx.AsyncClient) -> None:
    session = await start(client, DATA, process=False)
    await send(client, session["id"], DATA, 0)
    await send(client, session["id"], DATA, 2)

    refused = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert refused.status_code == 409
    assert refused.json()["missing_chunks"] == [1]
    assert "missing" in refused.json()["detail"]

    await send(client, session["id"], DATA, 1)
    done = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200
    again = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert again.status_code == 200
    assert again.json()["id"] == done.json()["id"]


async def test_bad_chunks_are_refused_and_not_recorded(client: httpx.AsyncClient) -> None:
    session = await start(client, DATA, process=False)
    url = f"/api/v1/uploads/{session['id']}/chunks"

    short = await client.put(f"{url}/0", content=chunk_of(DATA, 0)[:-1])
    assert short.status_code == 422 and str(CHUNK) in short.json()["detail"]
    longer = await client.put(f"{url}/2", content=chunk_of(DATA, 2) + b"x")
    assert longer.status_code == 422
    assert (await client.put(f"{url}/3", content=b"x")).status_code == 422
    assert (await client.put(f"{url}/-1", content=b"x")).status_code in (404, 422)
    mismatch = await send(client, session["id"], DATA, 1, **{"X-Chunk-SHA256": sha256(b"other")})
    assert mismatch.status_code == 422 and "not recorded" in mismatch.json()["detail"]
    matching = await send(client, session["id"], DATA, 2, **{"X-Chunk-SHA256": sha256(chunk_of(DATA, 2))})
    assert matching.status_code == 200
    bad_header = await send(client, session["id"], DATA, 2, **{"X-Chunk-SHA256": "zz"})
    assert bad_header.status_code == 422

    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["received_chunks"] == [2]
    assert state["missing_chunks"] == [0, 1]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"size": 0}, 422, "at least 1"),
        ({"size": 20 * MiB, "chunk_size": MiB}, 422, "5 MiB"),
        ({"size": 200 * MiB, "chunk_size": 128 * MiB}, 422, "at most"),
        ({"size": 3 * 1024**3 + 1}, 413, "limit"),
        ({"size": 100 * MiB, "sha256": "abc"}, 422, "64 hexadecimal"),
    ],
)
async def test_bad_sessions_are_refused(client: httpx.AsyncClient, body: dict[str, int], status: int, words: str) -> None:
    response = await client.post("/api/v1/uploads", json={"filename": "a.csv", **body})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


async def test_chunk_sizes_are_planned_within_s3_limits(client: httpx.AsyncClient) -> None:
    default = (await client.post("/api/v1/uploads", json={"filename": "a.csv", "size": 20 * MiB})).json()
    assert default["chunk_size"] == 8 * MiB and default["total_chunks"] == 3
    small = (await client.post("/api/v1/uploads", json={"filename": "a.csv", "size": 1000, "chunk_size": 10 * MiB})).json()
    assert small["total_chunks"] == 1 and small["chunk_size"] == 1000
    for created in (default, small):
        assert (await client.delete(f"/api/v1/uploads/{created['id']}")).status_code == 204


def test_more_than_10000_chunks_names_the_chunk_size_to_use(settings: Settings) -> None:
    big = settings.replace(max_file_size=200 * 1024**3)
    with pytest.raises(Unprocessable) as refused:
        plan_chunks(60 * 1024**3, CHUNK, big)
    assert refused.value.extra["min_chunk_size"] == 7 * MiB
    assert "at least 7340032 bytes" in refused.value.detail
    assert plan_chunks(100 * 1024**3, None, big) == (11 * MiB, 9310)


async def test_binary_chunk_zero_is_415_and_closes_the_session(client: httpx.AsyncClient, resources: Resources) -> None:
    data = bytes(range(256)) * (2 * CHUNK // 256)
    session = await start(client, data, process=False)
    refused = await send(client, session["id"], data, 0)
    assert refused.status_code == 415
    assert "CSV" in refused.json()["detail"]
    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["state"] == "failed"
    assert (await send(client, session["id"], data, 1)).status_code == 409
    assert incomplete_keys(resources, await session_key(resources, session["id"])) == []


async def test_whole_file_checksum_mismatch_fails_and_deletes(client: httpx.AsyncClient, resources: Resources) -> None:
    session = await start(client, DATA, sha256=sha256(b"something else"), process=False)
    for index in range(3):
        await send(client, session["id"], DATA, index)

    refused = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert refused.status_code == 422
    assert sha256(DATA) in refused.json()["detail"] and "deleted" in refused.json()["detail"]
    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["state"] == "failed"
    assert state["file_id"] is None
    assert (await client.post(f"/api/v1/uploads/{session['id']}/complete")).status_code == 409
    key = await session_key(resources, session["id"])
    assert resources.store.stat(key) is None
    assert incomplete_keys(resources, key) == []
    async with resources.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(File).where(File.storage_key == key)) == 0


async def test_concurrent_completes_assemble_once(
    client: httpx.AsyncClient, second_api: ApiServer, key: str, resources: Resources
) -> None:
    session = await start(client, DATA, process=True)
    for index in range(3):
        await send(client, session["id"], DATA, index)

    async with httpx.AsyncClient(base_url=second_api.url, headers=client.headers, timeout=120) as other_process:
        results = await asyncio.gather(
            *(
                http.post(f"/api/v1/uploads/{session['id']}/complete")
                for http in (client, other_process, client, other_process)
            )
        )
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    file_id = uuid.UUID(results[0].json()["id"])
    async with resources.sessionmaker() as db:
        jobs = await db.scalar(select(func.count()).select_from(Job).where(Job.file_id == file_id))
    assert jobs == 1
    assert {r.json()["job_id"] for r in results} == {results[0].json()["job_id"]} != {None}
    assert read_object(resources, results[0].json()["storage_key"]) == DATA


async def test_abort_releases_storage(client: httpx.AsyncClient, resources: Resources) -> None:
    session = await start(client, DATA, process=False)
    await send(client, session["id"], DATA, 0)
    assert (await client.get(f"/api/v1/uploads/{session['id']}")).json()["bytes_received"] == CHUNK
    key = await session_key(resources, session["id"])
    assert incomplete_keys(resources, key) == [key]

    assert (await client.delete(f"/api/v1/uploads/{session['id']}")).status_code == 204
    assert incomplete_keys(resources, key) == []
    assert resources.store.stat(key) is None
    assert (await client.get(f"/api/v1/uploads/{session['id']}")).json()["state"] == "aborted"
    assert (await send(client, session["id"], DATA, 1)).status_code == 409
    assert (await client.post(f"/api/v1/uploads/{session['id']}/complete")).status_code == 409
    assert (await client.delete(f"/api/v1/uploads/{session['id']}")).status_code == 204


async def test_chunks_of_one_session_through_two_api_processes(
    client: httpx.AsyncClient, second_api: ApiServer, resources: Resources
) -> None:
    session = await start(client, DATA, process=False)
    async with httpx.AsyncClient(base_url=second_api.url, headers=client.headers, timeout=120) as other_process:
        first, second = await asyncio.gather(
            send(client, session["id"], DATA, 0), send(other_process, session["id"], DATA, 1)
        )
        assert (first.status_code, second.status_code) == (200, 200)
        assert (await send(other_process, session["id"], DATA, 2)).status_code == 200
        state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
        assert state["missing_chunks"] == []
        done = await other_process.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    assert (await client.get(f"/api/v1/uploads/{session['id']}")).json()["file_id"] == done.json()["id"]
    assert read_object(resources, done.json()["storage_key"]) == DATA


async def test_sessions_are_invisible_to_other_owners(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient
) -> None:
    session = await start(client, DATA, process=False)
    await send(client, session["id"], DATA, 0)
    unknown = uuid.uuid4()
    for upload_id in (session["id"], unknown):
        responses = [
            await other_client.get(f"/api/v1/uploads/{upload_id}"),
            await send(other_client, str(upload_id), DATA, 1),
            await other_client.post(f"/api/v1/uploads/{upload_id}/complete"),
            await other_client.delete(f"/api/v1/uploads/{upload_id}"),
        ]
        assert [r.status_code for r in responses] == [404] * 4
        assert all(r.json()["detail"] == f"no upload session {upload_id}" for r in responses)
    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["state"] == "receiving" and state["received_chunks"] == [0]


async def test_progress_events_are_published(client: httpx.AsyncClient, resources: Resources) -> None:
    session = await start(client, DATA, process=False)
    pubsub = resources.redis.pubsub()
    await pubsub.subscribe(upload_channel(resources.settings.redis_prefix, session["id"]))
    try:
        for index in range(3):
            await send(client, session["id"], DATA, index)
        await client.post(f"/api/v1/uploads/{session['id']}/complete")
        events: list[UploadEvent] = []
        async with asyncio.timeout(10):
            while len(events) < 4:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    events.append(msgspec.json.decode(message["data"], type=UploadEvent))
    finally:
        await pubsub.aclose()
    assert [e.type for e in events] == ["chunk", "chunk", "chunk", "completed"]
    assert [e.received_chunks for e in events] == [1, 2, 3, 3]
    assert events[2].bytes_received == len(DATA)
    assert events[-1].file_id is not None and events[-1].state == "completed"
    assert [e.seq for e in events] == sorted(e.seq for e in events)


async def test_small_chunk_budget_queues_chunks_without_errors(resources: Resources, key: str) -> None:
    server = ApiServer(resources.settings.replace(upload_memory=CHUNK + 1, max_chunk_size=CHUNK))
    try:
        async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            session = await start(http, DATA, process=False)
            sent = await asyncio.gather(*(send(http, session["id"], DATA, i) for i in (0, 1, 2, 1, 0)))
            assert [r.status_code for r in sent] == [200] * 5
            done = await http.post(f"/api/v1/uploads/{session['id']}/complete")
        assert read_object(resources, done.json()["storage_key"]) == DATA
    finally:
        server.stop()


async def test_complete_after_a_crash_past_assembly_finishes_the_record(
    client: httpx.AsyncClient, resources: Resources
) -> None:
    session = await start(client, DATA, process=False)
    for index in range(3):
        await send(client, session["id"], DATA, index)
    # The API died after S3 assembled the object but before its transaction committed.
    async with resources.sessionmaker() as db:
        upload = await db.get_one(UploadSession, uuid.UUID(session["id"]))
        chunks = (await db.scalars(select(UploadChunk).where(UploadChunk.session_id == upload.id))).all()
    parts = [PartInfo(c.index + 1, c.etag) for c in chunks]
    await asyncio.to_thread(resources.store.complete, upload.storage_key, upload.s3_upload_id, parts)

    done = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    assert read_object(resources, done.json()["storage_key"]) == DATA
