"""The scan stage end to end: real clamd, a real API and worker, files uploaded as a user would."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from typing import Any

import asyncpg
import dramatiq
import httpx
import pytest
from httpx_sse import aconnect_sse

from app.resources import Resources
from tests.integration.jobs.conftest import Stack, wait_job
from tests.support.clamd import EICAR, SIGNATURE, ClamdServer
from workers.broker import make_broker
from workers.contracts import MAINTENANCE_QUEUE, job_channel, scan_file_message

pytestmark = pytest.mark.timeout(240)

CLEAN = b"id,name,amount\n1,alpha,10.5\n2,beta,-3\n3,gamma,7\n"


async def wait_file(client: httpx.AsyncClient, file_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    record: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/files/{file_id}")
        assert response.status_code == 200, response.text
        record = response.json()
        if record["status"] == status:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"file {file_id} still {record.get('status')} after {timeout}s: {record}")


async def dataset_tables(resources: Resources, file_id: str) -> list[str]:
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2",
            resources.settings.dataset_schema,
            f"f_{uuid.UUID(file_id).hex}%",
        )
    finally:
        await conn.close()
    return [r["tablename"] for r in rows]


async def test_the_eicar_file_is_quarantined_never_served_nor_processed(
    scan_client: httpx.AsyncClient, scan_stack: Stack, scanner: ClamdServer, resources: Resources
) -> None:
    channel = job_channel(scan_stack.settings.redis_prefix, "*")
    pubsub = resources.redis.pubsub()
    await pubsub.psubscribe(channel)
    try:
        response = await scan_client.put("/api/v1/files/invoice.csv", content=EICAR)
        assert response.status_code == 201, response.text
        stored = response.json()
        assert stored["status"] == "scanning" and stored["job_id"], stored
        file_id, job_id = stored["id"], stored["job_id"]

        record = await wait_file(scan_client, file_id, "quarantined")
        assert record["scan_signature"].startswith(SIGNATURE), record
        assert record["scanned_at"] and SIGNATURE in record["error"], record

        # The job ended with the signature, and its watchers were told on the wire.
        job = await wait_job(scan_client, job_id)
        assert job["state"] == "failed" and SIGNATURE in job["error"], job
        published = await _next_event(pubsub, job_id)
        assert published["state"] == "failed" and SIGNATURE in published["error"], published
    finally:
        await pubsub.aclose()

    async with aconnect_sse(scan_client, "GET", f"/api/v1/jobs/{job_id}/events") as source:
        events = [event async for event in source.aiter_sse() if event.data]
    assert events[-1].event == "failed" and SIGNATURE in json.loads(events[-1].data)["error"], events

    content = await scan_client.get(f"/api/v1/files/{file_id}/content")
    assert content.status_code == 409 and SIGNATURE in content.json()["detail"], content.text
    assert EICAR not in content.content
    again = await scan_client.post("/api/v1/jobs", json={"file_ids": [file_id]})
    assert again.status_code == 409 and SIGNATURE in again.json()["detail"], again.text
    assert await dataset_tables(resources, file_id) == []
    assert "quarantined" in (await scan_client.get("/api/v1/files", params={"status": "quarantined"})).text
    assert any(
        '"file scanned"' in line and '"infected"' in line and file_id in line for line in scan_stack.worker.output().splitlines()
    ), scan_stack.worker.output()[-2000:]

    metrics = httpx.get(f"http://127.0.0.1:{scan_stack.settings.worker_metrics_port}/metrics", timeout=10).text
    assert re.search(r'^sluice_scans_total\{outcome="infected"\} [1-9]', metrics, re.M), metrics[-3000:]

    # Deleting it is allowed, and removes its bytes from the bucket.
    key = record["storage_key"]
    assert resources.store.stat(key) is not None
    assert (await scan_client.delete(f"/api/v1/files/{file_id}")).status_code == 204
    assert resources.store.stat(key) is None


async def _next_event(pubsub: Any, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        if message is None:
            continue
        event = json.loads(message["data"])
        if event["job_id"] == job_id:
            return event
    raise AssertionError(f"no event of job {job_id} within {timeout}s")


async def test_a_clean_csv_is_scanned_then_processed_into_a_table(
    scan_client: httpx.AsyncClient, scanner: ClamdServer, resources: Resources
) -> None:
    response = await scan_client.put("/api/v1/files/clean.csv", content=CLEAN)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["status"] == "scanning", stored

    job = await wait_job(scan_client, stored["job_id"])
    assert job["state"] == "completed" and job["rows_ok"] == 3, job
    record = (await scan_client.get(f"/api/v1/files/{stored['id']}")).json()
    assert record["status"] == "stored" and record["scanned_at"] and record["scan_signature"] is None, record
    assert record["error"] is None, record
    content = await scan_client.get(f"/api/v1/files/{stored['id']}/content")
    assert content.status_code == 200 and content.content == CLEAN
    rows = (await scan_client.get(f"/api/v1/files/{stored['id']}/rows", params={"limit": 10})).json()
    assert [r[1] for r in rows["rows"]] == ["alpha", "beta", "gamma"], rows


async def test_while_the_scanner_is_down_the_file_waits_then_proceeds(
    scan_client: httpx.AsyncClient, scanner: ClamdServer, resources: Resources
) -> None:
    scanner.stop()
    response = await scan_client.put("/api/v1/files/waiting.csv", content=CLEAN)
    assert response.status_code == 201, response.text
    stored = response.json()
    file_id, job_id = stored["id"], stored["job_id"]

    # Several retries fail meanwhile (1, 2, 4 s backoff): the file waits, unprocessed and unserved.
    await asyncio.sleep(5)
    record = (await scan_client.get(f"/api/v1/files/{file_id}")).json()
    assert record["status"] == "scanning", record
    assert "clamd" in (record["error"] or ""), record
    job = (await scan_client.get(f"/api/v1/jobs/{job_id}")).json()
    assert job["state"] == "pending" and job["attempts"] == 0, job
    assert (await scan_client.get(f"/api/v1/files/{file_id}/content")).status_code == 409
    refused = await scan_client.post("/api/v1/jobs", json={"file_ids": [file_id]})
    assert refused.status_code == 409 and "scanned" in refused.json()["detail"], refused.text
    assert await dataset_tables(resources, file_id) == []

    scanner.start()
    job = await wait_job(scan_client, job_id, timeout=90)
    assert job["state"] == "completed" and job["rows_ok"] == 3, job
    record = (await scan_client.get(f"/api/v1/files/{file_id}")).json()
    assert record["status"] == "stored" and record["error"] is None, record


async def test_a_chunked_upload_not_to_be_processed_is_scanned_too(
    scan_client: httpx.AsyncClient, scanner: ClamdServer
) -> None:
    body = b"a,b\n" + EICAR + b",2\n"
    created = await scan_client.post(
        "/api/v1/uploads", json={"filename": "parts.csv", "size": len(body), "process": False}
    )
    assert created.status_code == 201, created.text
    upload_id = created.json()["id"]
    chunk = await scan_client.put(f"/api/v1/uploads/{upload_id}/chunks/0", content=body)
    assert chunk.status_code == 200, chunk.text
    completed = await scan_client.post(f"/api/v1/uploads/{upload_id}/complete")
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "scanning" and completed.json()["job_id"] is None, completed.text

    record = await wait_file(scan_client, completed.json()["id"], "quarantined", timeout=30)
    assert record["scan_signature"].startswith(SIGNATURE), record
    content = await scan_client.get(f"/api/v1/files/{record['id']}/content")
    assert content.status_code == 409, content.text


async def test_each_file_of_a_batch_gets_its_own_verdict(scan_client: httpx.AsyncClient, scanner: ClamdServer) -> None:
    files = [("file", ("bad.csv", EICAR, "text/csv")), ("file", ("good.csv", CLEAN, "text/csv"))]
    response = await scan_client.post("/api/v1/files", files=files)
    assert response.status_code == 201, response.text
    stored = {r["filename"]: r["file"] for r in response.json()["results"]}
    assert {f["status"] for f in stored.values()} == {"scanning"}, stored

    bad = await wait_file(scan_client, stored["bad.csv"]["id"], "quarantined")
    assert bad["scan_signature"].startswith(SIGNATURE), bad
    good = await wait_job(scan_client, stored["good.csv"]["job_id"])
    assert good["state"] == "completed" and good["rows_ok"] == 3, good
    failed = await wait_job(scan_client, stored["bad.csv"]["job_id"])
    assert failed["state"] == "failed" and SIGNATURE in failed["error"], failed
    batch = (await scan_client.get(f"/api/v1/batches/{failed['batch_id']}")).json()
    assert batch["state"] == "failed", batch


async def _set_waiting(resources: Resources, file_id: str, *, minutes_ago: int) -> None:
    """Put a file back in ``scanning`` as if its scan message had been lost ``minutes_ago``."""
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        await conn.execute(
            "UPDATE files SET status = 'scanning', scan_signature = NULL, scanned_at = NULL, error = NULL,"
            " updated_at = now() - make_interval(mins => $2) WHERE id = $1",
            uuid.UUID(file_id),
            minutes_ago,
        )
    finally:
        await conn.close()


async def test_a_file_whose_scan_message_was_lost_is_scanned_by_the_sweep(
    scan_client: httpx.AsyncClient, scan_stack: Stack, scanner: ClamdServer, resources: Resources
) -> None:
    lost = (await scan_client.put("/api/v1/files/lost.csv", params={"process": "false"}, content=EICAR)).json()
    recent = (await scan_client.put("/api/v1/files/recent.csv", params={"process": "false"}, content=EICAR)).json()
    for record in (lost, recent):
        await wait_file(scan_client, record["id"], "quarantined")
    await _set_waiting(resources, lost["id"], minutes_ago=10)
    await _set_waiting(resources, recent["id"], minutes_ago=0)

    # The periodic sweep, now: its message on this stack's queue.
    make_broker(scan_stack.settings).enqueue(
        dramatiq.Message(queue_name=MAINTENANCE_QUEUE, actor_name="rescan_waiting_files", args=(), kwargs={}, options={})
    )
    record = await wait_file(scan_client, lost["id"], "quarantined", timeout=60)
    assert record["scan_signature"].startswith(SIGNATURE), record
    # A file touched lately may still have a live message: the sweep leaves it alone (given time to
    # be scanned, had the sweep sent it).
    await asyncio.sleep(2)
    assert (await scan_client.get(f"/api/v1/files/{recent['id']}")).json()["status"] == "scanning"
    await scan_client.delete(f"/api/v1/files/{recent['id']}")


async def test_a_file_whose_bytes_vanished_before_its_scan_fails_saying_so(
    scan_client: httpx.AsyncClient, scan_stack: Stack, scanner: ClamdServer, resources: Resources
) -> None:
    stored = (await scan_client.put("/api/v1/files/gone.csv", content=CLEAN)).json()
    await wait_job(scan_client, stored["job_id"])
    await _set_waiting(resources, stored["id"], minutes_ago=0)
    resources.store.delete(stored["storage_key"])

    make_broker(scan_stack.settings).enqueue(scan_file_message(uuid.UUID(stored["id"])))
    record = await wait_file(scan_client, stored["id"], "failed", timeout=60)
    assert "missing from the object store" in record["error"], record
