"""tus PATCHes share the API's upload memory budget: with room for two parts only, several uploads
at once all arrive whole (each waits for a slice; none deadlocks), as do the other upload routes'."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.resources import Resources
from tests.integration.tus.conftest import MiB, create, csv_bytes, stored
from tests.support.servers import ApiServer

PART = 5 * MiB


@pytest.fixture(scope="module")
def tight_api(resources: Resources) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings.replace(upload_memory=2 * PART, max_chunk_size=2 * PART))
    yield server
    server.stop()


@pytest.fixture
async def tight(tight_api: ApiServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tight_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        yield http


async def test_four_patches_at_once_within_two_parts_of_memory_all_arrive(tight: httpx.AsyncClient) -> None:
    data = [csv_bytes(13 * MiB + n * 1000)[: 13 * MiB + n * 1000] for n in range(4)]

    async def upload(body: bytes) -> str:
        path = await create(tight, len(body))
        # Pieces of 64 KiB: the request body arrives as a stream, as from a real client.
        pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))

        async def stream() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        answer = await tight.patch(
            path,
            content=stream(),
            headers={"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
        )
        assert answer.status_code == 204, answer.text
        return answer.headers["sluice-file-id"]

    async with asyncio.timeout(180):
        file_ids = await asyncio.gather(*(upload(body) for body in data))
    for file_id, body in zip(file_ids, data, strict=True):
        assert await stored(tight, file_id) == body
