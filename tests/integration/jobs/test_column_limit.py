"""A file wider than a PostgreSQL table fails its job with a reason the user can act on."""

from __future__ import annotations

import httpx

from tests.integration.jobs.conftest import Stack, wait_job


def wide_csv(columns: int) -> bytes:
    # One-letter text values: 1,599 bigint columns pass the column limit but not PostgreSQL's 8 KB row.
    header = ",".join(f"c{i}" for i in range(columns))
    row = ",".join("x" for _ in range(columns))
    return f"{header}\n{row}\n{row}\n".encode()


async def test_a_file_wider_than_a_table_fails_saying_what_to_change(jobs_client: httpx.AsyncClient, stack: Stack) -> None:
    response = await jobs_client.put("/api/v1/files/wide.csv", content=wide_csv(1700))
    assert response.status_code == 201, response.text

    job = await wait_job(jobs_client, response.json()["job_id"])

    assert job["state"] == "failed"
    assert job["attempts"] == 1
    error = str(job["error"])
    assert "1,700 columns" in error and "1,600" in error and "at most 1,599 columns" in error, error
    assert "internal error" not in error
    assert stack.worker is not None
    assert not [
        line for line in stack.worker.output().splitlines() if job["id"] in line and '"level": "ERROR"' in line
    ], "the refusal was logged as an unhandled exception"

    widest = await jobs_client.put("/api/v1/files/widest.csv", content=wide_csv(1599))
    assert widest.status_code == 201, widest.text
    done = await wait_job(jobs_client, widest.json()["job_id"])
    assert done["state"] == "completed", done["error"]
    rows = (await jobs_client.get(f"/api/v1/files/{widest.json()['id']}/rows")).json()
    assert len(rows["columns"]) == 1599 and rows["total"] == 2


async def test_a_row_too_big_for_postgresql_is_rejected_alone(jobs_client: httpx.AsyncClient) -> None:
    # 1,500 values of 8 letters make a row of about 13 KB, past PostgreSQL's 8 KB and too short
    # to be moved out of line; the rows around it are small and are stored.
    columns = 1500
    header = ",".join(f"c{i}" for i in range(columns))
    small = ",".join("" for _ in range(columns))
    big = ",".join("abcdefgh" for _ in range(columns))
    body = f"{header}\n{small}\n{big}\n{small}\n".encode()
    response = await jobs_client.put("/api/v1/files/big-row.csv", content=body)
    assert response.status_code == 201, response.text

    job = await wait_job(jobs_client, response.json()["job_id"])

    assert job["state"] == "completed", job["error"]
    assert (job["rows_ok"], job["rows_rejected"]) == (2, 1)
    rejects = (await jobs_client.get(f"/api/v1/jobs/{job['id']}/rejects")).json()["items"]
    assert [r["row_number"] for r in rejects] == [3]
    assert "too big" in rejects[0]["reason"], rejects[0]["reason"]
