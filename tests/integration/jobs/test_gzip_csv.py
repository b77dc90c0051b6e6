"""gzip-compressed CSV: stored as sent, processed with streaming decompression, progress in
compressed bytes; and text served back in the charset it was detected in."""

from __future__ import annotations

import gzip
import random
import uuid

import asyncpg
import httpx
import pytest

from app.resources import Resources
from db.sql import qualified
from tests.integration.jobs.conftest import wait_job
from tests.integration.uploads.support import read_object

pytestmark = pytest.mark.timeout(300)
ROWS = 150_000


def plain_csv(rows: int) -> bytes:
    rng = random.Random(7)
    lines = ["id,code,amount,note"]
    lines += [f"{i},{uuid.UUID(int=rng.getrandbits(128))},{i / 4},\"row {i}, of {rows}\"" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


async def test_a_gzip_csv_becomes_its_table(jobs_client: httpx.AsyncClient, resources: Resources) -> None:
    plain = plain_csv(ROWS)
    body = gzip.compress(plain, compresslevel=6)
    assert len(body) > 3 * 1024 * 1024
    response = await jobs_client.put("/api/v1/files/export.csv.gz", content=body)
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["kind"], record["content_type"], record["size"]) == ("csv", "application/gzip", len(body))
    assert read_object(resources, record["storage_key"]) == body

    job = await wait_job(jobs_client, record["job_id"], timeout=240)
    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (ROWS, 0)
    assert job["bytes_read"] == job["bytes_total"] == len(body)

    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        table = qualified(resources.settings.dataset_schema, f"f_{record['id'].replace('-', '')}")
        count, ids, last = await conn.fetchrow(
            f"SELECT count(*), sum(id), max(_row) FROM {table}"  # noqa: S608 - quoted by qualified()
        )
        sample = await conn.fetchrow(f"SELECT id, code, amount::text, note FROM {table} WHERE id = 12345")  # noqa: S608
    finally:
        await conn.close()
    assert (count, ids, last) == (ROWS, ROWS * (ROWS - 1) // 2, ROWS + 1)
    line = plain.split(b"\n")[12346].decode()
    assert f'{sample["id"]},{sample["code"]},{sample["amount"]},"{sample["note"]}"' == line


async def test_a_corrupt_gzip_fails_its_job_with_the_reason(jobs_client: httpx.AsyncClient) -> None:
    body = gzip.compress(plain_csv(20_000))
    response = await jobs_client.put("/api/v1/files/cut.csv.gz", content=body[: len(body) // 2])
    assert response.status_code == 201, response.text
    job = await wait_job(jobs_client, response.json()["job_id"])
    assert job["state"] == "failed"
    assert "not valid gzip" in job["error"] and job["attempts"] == 1


async def test_gzip_of_something_else_is_refused(jobs_client: httpx.AsyncClient) -> None:
    response = await jobs_client.put("/api/v1/files/blob.csv.gz", content=gzip.compress(bytes(range(256)) * 400))
    assert response.status_code == 415
    assert "gzip" in response.json()["detail"]


async def test_text_is_served_back_in_its_charset(jobs_client: httpx.AsyncClient) -> None:
    latin = "name,city\nJosé,Málaga\n".encode("latin-1")
    record = (await jobs_client.put("/api/v1/files/latin.csv?process=false", content=latin)).json()
    content = await jobs_client.get(f"/api/v1/files/{record['id']}/content")
    assert content.headers["content-type"] == "text/csv; charset=iso-8859-1"
    assert content.text == "name,city\nJosé,Málaga\n"
