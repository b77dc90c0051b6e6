"""A request body that stops arriving ends with 408 after SLUICE_BODY_IDLE_TIMEOUT, on every upload
route, and gives back what it held: its multipart upload, its memory, its record marked failed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from app.resources import Resources
from db.models import File
from tests.integration.uploads.support import MiB, csv_bytes, incomplete_keys, sha256
from tests.support.servers import ApiServer

IDLE = 1.5
MEMORY = 16 * MiB


@pytest.fixture(scope="module")
def impatient_api(resources: Resources) -> Iterator[ApiServer]:
    """An API that waits 1.5 s for a body's next byte, with one 16 MiB chunk's worth of upload memory."""
    server = ApiServer(
        resources.settings.replace(body_idle_timeout=IDLE, upload_memory=MEMORY, max_chunk_size=MEMORY)
    )
    yield server
    server.stop()


async def stalled_answer(
    url: str, method: str, path: str, key: str, length: int, sent: bytes, content_type: str | None = None
) -> tuple[int, dict[str, str], dict[str, object], float]:
    """Send the head and ``sent`` of a ``length``-byte body, then nothing: the answer, and when it came."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Length: {length}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    writer.write(head.encode() + b"\r\n" + sent)
    await writer.drain()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(30):
            raw = await reader.read()  # the server closes the connection after a 408
    finally:
        writer.close()
    elapsed = time.perf_counter() - started
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, body = rest.partition(b"\r\n\r\n")
    headers = dict(line.decode().split(": ", 1) for line in header_block.split(b"\r\n") if b": " in line)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body), elapsed


async def file_named(resources: Resources, name: str) -> File:
    async with resources.sessionmaker() as db:
        file = await db.scalar(select(File).where(File.filename == name))
    assert file is not None
    return file


async def test_a_stalled_single_shot_upload_answers_408_and_releases_everything(
    impatient_api: ApiServer, key: str, resources: Resources
) -> None:
    name = f"stalled-{uuid.uuid4().hex[:8]}.csv"
    # More than one 5 MiB part: the multipart upload exists and a part is in the store when it stalls.
    sent = csv_bytes(6 * MiB)
    status, headers, body, elapsed = await stalled_answer(
        impatient_api.url, "PUT", f"/api/v1/files/{name}", key, 20 * MiB, sent
    )
    assert status == 408, body
    assert "SLUICE_BODY_IDLE_TIMEOUT" in str(body["detail"]) and "send it again" in str(body["detail"])
    assert headers.get("connection") == "close"
    assert IDLE <= elapsed < IDLE + 10

    file = await file_named(resources, name)
    assert file.status == "failed"
    assert file.error is not None and "no byte of the request body arrived" in file.error
    assert incomplete_keys(resources, file.storage_key) == []

    # The stalled request's memory is back: a chunk as big as the whole budget goes through.
    await whole_budget_chunk(impatient_api, key)


async def test_a_stalled_chunk_answers_408_is_not_recorded_and_can_be_sent_again(
    impatient_api: ApiServer, key: str
) -> None:
    data = csv_bytes(MEMORY + 1000)
    async with httpx.AsyncClient(base_url=impatient_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        created = await http.post(
            "/api/v1/uploads", json={"filename": "c.csv", "size": len(data), "chunk_size": MEMORY, "process": False}
        )
        upload_id = created.json()["id"]
        status, _, body, _ = await stalled_answer(
            impatient_api.url, "PUT", f"/api/v1/uploads/{upload_id}/chunks/0", key, MEMORY, data[:MiB]
        )
        assert status == 408, body
        assert "SLUICE_BODY_IDLE_TIMEOUT" in str(body["detail"])
        state = (await http.get(f"/api/v1/uploads/{upload_id}")).json()
        assert state["state"] == "receiving"
        assert state["received_chunks"] == []

        # Its memory was released (the chunk is the whole budget) and the session goes on.
        again = await http.put(f"/api/v1/uploads/{upload_id}/chunks/0", content=data[:MEMORY])
        assert again.status_code == 200, again.text
        last = await http.put(f"/api/v1/uploads/{upload_id}/chunks/1", content=data[MEMORY:])
        assert last.status_code == 200, last.text
        done = await http.post(f"/api/v1/uploads/{upload_id}/complete")
        assert done.status_code == 200, done.text


async def test_a_stalled_batch_answers_408_and_keeps_none_of_its_files(
    impatient_api: ApiServer, key: str, resources: Resources
) -> None:
    first, second = f"whole-{uuid.uuid4().hex[:8]}.csv", f"cut-{uuid.uuid4().hex[:8]}.csv"
    boundary = "sluiceboundary"
    whole = csv_bytes(200_000)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{first}\"\r\n"
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + whole + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{second}\"\r\n"
        "Content-Type: text/csv\r\n\r\n"
    ).encode() + csv_bytes(100_000)
    status, _, answer, _ = await stalled_answer(
        impatient_api.url, "POST", "/api/v1/files", key, len(body) + 10 * MiB, body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert status == 408, answer
    assert "SLUICE_BODY_IDLE_TIMEOUT" in str(answer["detail"])
    assert (await file_named(resources, first)).status == "deleted"
    cut = await file_named(resources, second)
    assert cut.status == "failed" and cut.error is not None and "no byte of the request body arrived" in cut.error


async def test_a_slow_but_steady_body_is_not_cut(impatient_api: ApiServer, key: str) -> None:
    data = csv_bytes(300_000)

    async def trickle() -> object:
        for start in range(0, len(data), 50_000):
            await asyncio.sleep(IDLE / 2)
            yield data[start : start + 50_000]

    async with httpx.AsyncClient(base_url=impatient_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        response = await http.put(
            "/api/v1/files/slow.csv?process=false", content=trickle(), headers={"Content-Length": str(len(data))}
        )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256(data)


async def whole_budget_chunk(api: ApiServer, key: str) -> None:
    data = csv_bytes(MEMORY)
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        created = await http.post(
            "/api/v1/uploads", json={"filename": "w.csv", "size": len(data), "chunk_size": MEMORY, "process": False}
        )
        assert created.status_code == 201, created.text
        async with asyncio.timeout(30):
            sent = await http.put(f"/api/v1/uploads/{created.json()['id']}/chunks/0", content=data)
        assert sent.status_code == 200, sent.text
