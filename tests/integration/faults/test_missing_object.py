"""A stored file whose object the store lost: its content answers 410 saying so, and processing
fails at once with that reason instead of retrying."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.resources import Resources
from db.models import File
from tests.integration.jobs.conftest import Stack, wait_job, worker_settings
from tests.support.servers import ApiServer

CSV = b"id,name\n1,a\n2,b\n"


async def _lose_object(resources: Resources, file_id: str) -> None:
    async with resources.sessionmaker() as db:
        key = (await db.get_one(File, uuid.UUID(file_id))).storage_key
    await asyncio.to_thread(resources.store.delete, key)


async def test_content_of_a_lost_object_answers_410(client: httpx.AsyncClient, resources: Resources) -> None:
    stored = await client.put("/api/v1/files/lost.csv?process=false", content=CSV)
    assert stored.status_code == 201, stored.text
    await _lose_object(resources, stored.json()["id"])

    response = await client.get(f"/api/v1/files/{stored.json()['id']}/content")
    assert response.status_code == 410
    assert "missing from the object store" in response.json()["detail"]
    assert "Retry-After" not in response.headers
    # Deleting it still works: there is nothing left to remove.
    assert (await client.delete(f"/api/v1/files/{stored.json()['id']}")).status_code == 204


@pytest.fixture(scope="module")
def processing_stack(resources: Resources) -> Iterator[Stack]:
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-{uuid.uuid4().hex[:8]}")
    stack = Stack(settings, ApiServer(settings), None)
    stack.start_worker()
    yield stack
    stack.stop()


@pytest.fixture
async def stack_client(processing_stack: Stack, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=processing_stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        yield http


async def test_processing_a_lost_object_fails_at_once(stack_client: httpx.AsyncClient, resources: Resources) -> None:
    stored = await stack_client.put("/api/v1/files/lost.csv?process=false", content=CSV)
    assert stored.status_code == 201, stored.text
    await _lose_object(resources, stored.json()["id"])

    created = await stack_client.post(
        "/api/v1/jobs", json={"file_ids": [stored.json()["id"]], "options": {"max_retries": 3}}
    )
    assert created.status_code == 201, created.text
    job = await wait_job(stack_client, created.json()["jobs"][0]["id"], timeout=30)
    assert job["state"] == "failed"
    assert job["attempts"] == 1
    assert "missing from the object store" in str(job["error"])
