"""Batches as resources: read, listed and cancelled as one, through the real API and a real worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from app.params import MAX_OFFSET
from app.resources import Resources
from db.models import File, FileKind, FileStatus, Job, JobState
from tests.integration.batches.conftest import client_of
from tests.integration.events.support import owner_of
from tests.integration.jobs.conftest import Stack

GOOD = b"id,name\n1,a\n2,b\n3,c\n"
WIDE = (",".join(f"c{i}" for i in range(1700)) + "\n" + ",".join("x" * 1700) + "\n").encode()


async def wait_batch(client: httpx.AsyncClient, batch_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/batches/{batch_id}")
        assert response.status_code == 200, response.text
        record = response.json()
        if record["finished_at"] is not None:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"batch {batch_id} unfinished after {timeout}s: {record}")


async def stored(client: httpx.AsyncClient, name: str, body: bytes) -> str:
    response = await client.put(f"/api/v1/files/{name}", params={"process": "false"}, content=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_multi_file_upload_is_a_batch_with_each_files_outcome(
    batch_stack: Stack, key: str, other_key: str
) -> None:
    async with client_of(batch_stack, key) as client, client_of(batch_stack, other_key) as other:
        response = await client.post(
            "/api/v1/files", files=[("file", ("good.csv", GOOD)), ("file", ("wide.csv", WIDE))]
        )
        assert response.status_code == 201, response.text
        batch_id = response.json()["batch_id"]

        batch = await wait_batch(client, batch_id)

        assert batch["id"] == batch_id
        assert batch["state"] == "failed"
        assert (batch["files_total"], batch["files_processed"], batch["files_failed"]) == (2, 1, 1)
        assert batch["jobs_by_state"] == {"completed": 1, "failed": 1}
        assert batch["rows_ok"] == 3
        assert batch["progress"] == 100.0 and batch["eta_s"] is None
        assert batch["bytes_total"] == len(GOOD) + len(WIDE)
        jobs = {j["filename"]: j for j in batch["jobs"]}
        assert jobs["good.csv"]["state"] == "completed" and jobs["good.csv"]["error"] is None
        assert jobs["wide.csv"]["state"] == "failed" and "1,700 columns" in jobs["wide.csv"]["error"]
        results = {r["filename"]: r["file"] for r in response.json()["results"]}
        assert {jobs[n]["file_id"] for n in jobs} == {results[n]["id"] for n in results}
        assert {jobs[n]["id"] for n in jobs} == {results[n]["job_id"] for n in results}

        cancel = await client.post(f"/api/v1/batches/{batch_id}/cancel")
        assert cancel.status_code == 409, cancel.text
        assert "already finished" in cancel.json()["detail"]

        for method, path in (("GET", f"/api/v1/batches/{batch_id}"), ("POST", f"/api/v1/batches/{batch_id}/cancel")):
            assert (await other.request(method, path)).status_code == 404
        assert batch_id not in {b["id"] for b in (await other.get("/api/v1/batches")).json()["items"]}


async def test_cancel_stops_every_unfinished_job_of_the_batch(idle_stack: Stack, key: str, other_key: str) -> None:
    async with client_of(idle_stack, key) as client, client_of(idle_stack, other_key) as other:
        ids = [await stored(client, f"part{i}.csv", GOOD) for i in range(3)]
        created = await client.post("/api/v1/jobs", json={"file_ids": ids})
        assert created.status_code == 201, created.text
        batch_id = created.json()["batch_id"]
        pending = (await client.get(f"/api/v1/batches/{batch_id}")).json()
        assert (pending["state"], pending["jobs_by_state"], pending["progress"]) == ("pending", {"pending": 3}, 0.0)

        assert (await other.post(f"/api/v1/batches/{batch_id}/cancel")).status_code == 404
        assert (await client.get(f"/api/v1/batches/{batch_id}")).json()["state"] == "pending"

        response = await client.post(f"/api/v1/batches/{batch_id}/cancel")

        assert response.status_code == 202, response.text
        batch = response.json()
        assert batch["state"] == "cancelled" and batch["files_cancelled"] == 3
        assert batch["finished_at"] is not None
        for job in batch["jobs"]:
            record = (await client.get(f"/api/v1/jobs/{job['id']}")).json()
            assert (record["state"], record["cancel_requested"]) == ("cancelled", True)
        again = await client.post(f"/api/v1/batches/{batch_id}/cancel")
        assert again.status_code == 409, again.text
        assert (await client.post(f"/api/v1/batches/{uuid.uuid4()}/cancel")).status_code == 404


async def test_progress_is_weighted_by_bytes_and_eta_follows_the_pace_so_far(
    idle_stack: Stack, key: str, resources: Resources
) -> None:
    owner = await owner_of(resources, key)
    batch_id = uuid.uuid4()
    started = datetime.now(UTC) - timedelta(seconds=60)
    # 9,000 bytes done (a completed 8,000-byte file, half of a 2,000-byte one) of 20,000 in 60 s.
    for size, values in (
        (8_000, {"state": JobState.completed, "progress": 100.0, "rows_ok": 80, "bytes_read": 8_000, "finished_at": started}),
        (2_000, {"state": JobState.processing, "progress": 50.0, "rows_ok": 10, "bytes_read": 1_000}),
        (10_000, {"state": JobState.pending}),
    ):
        await _insert(resources, owner, batch_id, size, started_at=started, **values)

    async with client_of(idle_stack, key) as client:
        batch = (await client.get(f"/api/v1/batches/{batch_id}")).json()

    assert batch["state"] == "processing"
    assert batch["progress"] == 45.0
    assert (batch["bytes_read"], batch["bytes_total"], batch["rows_ok"]) == (9_000, 20_000, 90)
    # 55 % left at 45 % a minute: 73 s, give or take the request's own time.
    assert 72 <= batch["eta_s"] <= 76, batch
    assert batch["finished_at"] is None


async def test_batches_are_listed_newest_first_in_bounded_pages(idle_stack: Stack, key: str) -> None:
    async with client_of(idle_stack, key) as client:
        made = []
        for i in range(3):
            response = await client.post("/api/v1/jobs", json={"file_ids": [await stored(client, f"l{i}.csv", GOOD)]})
            made.append(response.json()["batch_id"])

        first = (await client.get("/api/v1/batches", params={"limit": 2})).json()
        second = (await client.get("/api/v1/batches", params={"limit": 2, "offset": 2})).json()

        assert [b["id"] for b in first["items"] + second["items"]][:3] == made[::-1]
        assert first["total"] >= 3 and (first["offset"], first["limit"]) == (0, 2)
        assert first["items"][0]["files_total"] == 1 and "jobs" not in first["items"][0]
        for bad in ({"offset": -1}, {"offset": MAX_OFFSET + 1}, {"limit": 0}):
            response = await client.get("/api/v1/batches", params=bad)
            assert response.status_code == 422, (bad, response.text)
            assert next(iter(bad)) in response.text


async def _insert(resources: Resources, owner: uuid.UUID, batch_id: uuid.UUID, size: int, **values: Any) -> None:
    file = File(
        id=uuid.uuid4(),
        owner_id=owner,
        original_filename=f"{size}.csv",
        filename=f"{size}.csv",
        size=size,
        kind=FileKind.csv,
        status=FileStatus.stored,
        bucket=resources.settings.s3_bucket,
        storage_key=f"files/{owner}/{size}",
    )
    async with resources.sessionmaker() as session:
        session.add(file)
        await session.flush()
        session.add(Job(owner_id=owner, batch_id=batch_id, file_id=file.id, bytes_total=size, **values))
        await session.commit()
