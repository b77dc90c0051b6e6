"""A file not processed yet and a job that has not started carry an estimate of the processing time,
from this deployment's measured throughput."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from tests.integration.batches.conftest import client_of
from tests.integration.jobs.conftest import Stack, wait_job

MB = 1_000_000


def typed_csv(size: int) -> bytes:
    """A CSV of about ``size`` bytes with integer, decimal, text, date and boolean columns."""
    rows = ["id,amount,label,day,active\n"]
    total, i = len(rows[0]), 0
    while total < size:
        row = f"{i},{i % 100_000}.{i % 100:02d},customer number {i},2024-{i % 12 + 1:02d}-{i % 28 + 1:02d},{i % 2 == 0}\n"
        rows.append(row)
        total += len(row)
        i += 1
    return "".join(rows).encode()


async def pending_job(client: httpx.AsyncClient, file_id: str) -> dict[str, object]:
    response = await client.post("/api/v1/jobs", json={"file_ids": [file_id]})
    assert response.status_code == 201, response.text
    batch = (await client.get(f"/api/v1/batches/{response.json()['batch_id']}")).json()
    [job] = batch["jobs"]
    assert job["state"] == "pending"
    return job  # type: ignore[no-any-return]


def seconds(job: dict[str, object]) -> float:
    return (datetime.fromisoformat(str(job["finished_at"])) - datetime.fromisoformat(str(job["started_at"]))).total_seconds()


async def test_the_estimate_of_a_100_mb_csv_is_within_a_factor_of_two(make_stack: Callable[..., Stack], key: str) -> None:
    stack = make_stack(worker=False)
    async with client_of(stack, key) as client:
        ids = []
        for name, size in (("first.csv", 25 * MB), ("big.csv", 100 * MB)):
            response = await client.put(f"/api/v1/files/{name}", params={"process": "false"}, content=typed_csv(size))
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
            assert response.json()["estimated_processing_s"] >= 1

        first = await pending_job(client, ids[0])
        assert first["estimated_processing_s"] is not None and first["estimated_processing_s"] >= 1
        stack.start_worker()
        done = await wait_job(client, str(first["id"]), timeout=300)
        assert done["state"] == "completed", done
        assert stack.worker is not None
        stack.worker.stop()

        unprocessed = (await client.get(f"/api/v1/files/{ids[1]}")).json()
        big = await pending_job(client, ids[1])
        estimate = float(big["estimated_processing_s"])  # type: ignore[arg-type]
        assert unprocessed["estimated_processing_s"] == estimate
        record = (await client.get(f"/api/v1/jobs/{big['id']}")).json()
        assert (record["estimated_processing_s"], record["eta_s"]) == (estimate, None)
        stack.start_worker()
        job = await wait_job(client, str(big["id"]), timeout=600)

        assert job["state"] == "completed", job
        actual = seconds(job)
        assert actual / 2 <= estimate <= actual * 2, (estimate, actual, seconds(done))
        batch = (await client.get(f"/api/v1/batches/{job['batch_id']}")).json()
        assert batch["jobs"][0]["estimated_processing_s"] is None and job["estimated_processing_s"] is None
        processed = (await client.get(f"/api/v1/files/{ids[1]}")).json()
        assert (processed["job_state"], processed["estimated_processing_s"]) == ("completed", None)
