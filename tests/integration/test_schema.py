"""The schema the migrations build is the one the models describe, and it guards what it promises."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from db.models.base import Base


async def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    finally:
        await engine.dispose()
    assert diff == [], f"models and migrations differ; write a migration for: {diff}"


async def _stored_file(client: httpx.AsyncClient) -> str:
    response = await client.put("/api/v1/files/one.csv", params={"process": "false"}, content=b"a,b\n1,2\n")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_concurrent_requests_get_one_active_job_per_file(client: httpx.AsyncClient) -> None:
    file_id = await _stored_file(client)
    answers = await asyncio.gather(
        *(client.post("/api/v1/jobs", json={"file_ids": [file_id]}) for _ in range(8))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 7, [r.text for r in answers]
    assert all("wait for it or cancel it" in r.json()["detail"] for r in answers if r.status_code == 409)


async def test_the_database_refuses_a_second_active_job(client: httpx.AsyncClient, database_url: str) -> None:
    file_id = uuid.UUID(await _stored_file(client))
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        owner = await conn.fetchval("SELECT owner_id FROM files WHERE id = $1", file_id)
        insert = (
            "INSERT INTO jobs (id, owner_id, batch_id, file_id, state, options, rows_ok, rows_rejected, bytes_read,"
            " bytes_total, progress, rate, attempts, cancel_requested, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, '{}', 0, 0, 0, 0, 0, 0, 0, false, now(), now())"
        )
        await conn.execute(insert, uuid.uuid4(), owner, uuid.uuid4(), file_id, "pending")
        with pytest.raises(asyncpg.UniqueViolationError, match="uq_jobs_one_active_per_file"):
            await conn.execute(insert, uuid.uuid4(), owner, uuid.uuid4(), file_id, "processing")
        # Finished jobs do not count: a file keeps its history.
        await conn.execute(insert, uuid.uuid4(), owner, uuid.uuid4(), file_id, "completed")
    finally:
        # No worker of another test (same database) should pick these jobs up.
        await conn.execute("DELETE FROM jobs WHERE file_id = $1", file_id)
        await conn.close()
