"""GET /api/v1/admin/metrics: admins only, counted from real uploads and jobs, and the hourly
rollup keeps the history after the jobs themselves are purged."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import dramatiq
import httpx
import pytest
from sqlalchemy import delete, select

from app.auth import create_api_key
from app.resources import Resources
from db.models import HourlyMetrics, Job
from db.models.metrics import hour_totals
from tests.integration.jobs.conftest import Stack, Worker, wait_job, worker_settings
from tests.support.servers import ApiServer
from workers.broker import make_broker, queue_key
from workers.contracts import MAINTENANCE_QUEUE, PROCESS_QUEUE
from workers.processing import purge_old_jobs
from workers.rollup import hour_of, roll_up

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def rows_csv(count: int) -> bytes:
    return b"id,name,amount\n" + b"".join(f"{i},item {i},{i * 3}.25\n".encode() for i in range(count))


def totals(body: dict[str, Any]) -> dict[str, int]:
    fields = ("uploads", "bytes", "rows", "upload_failures", "job_failures")
    return {name: sum(point[name] for point in body["series"]) for name in fields}


@pytest.fixture(scope="module")
def metrics_stack(resources: Resources) -> Iterator[Stack]:
    """An API and a worker with a Redis namespace of their own: its queue and heartbeats are theirs."""
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-webmetrics")
    stack = Stack(settings, ApiServer(settings), None)
    stack.worker = Worker(settings)
    yield stack
    stack.stop()


async def _client(stack: Stack, resources: Resources, *, admin: bool) -> httpx.AsyncClient:
    async with resources.sessionmaker() as session:
        _, secret = await create_api_key(session, "dashboard-admin" if admin else "dashboard-user", admin=admin)
        await session.commit()
    return httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120)


@pytest.fixture
async def admin_http(metrics_stack: Stack, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(metrics_stack, resources, admin=True) as http:
        yield http


@pytest.fixture
async def user_http(metrics_stack: Stack, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(metrics_stack, resources, admin=False) as http:
        yield http


async def test_only_admin_keys_and_known_ranges(admin_http: httpx.AsyncClient, user_http: httpx.AsyncClient) -> None:
    refused = await user_http.get("/api/v1/admin/metrics")
    assert refused.status_code == 403 and "--admin" in refused.json()["detail"]
    anonymous = await httpx.AsyncClient(base_url=str(admin_http.base_url)).get("/api/v1/admin/metrics")
    assert anonymous.status_code == 401
    for bad in ("1h", "24", "7D", "", "30d;drop"):
        response = await admin_http.get("/api/v1/admin/metrics", params={"range": bad})
        assert response.status_code == 422, (bad, response.text)
        assert "range" in response.json()["detail"]
    for window, hours in (("24h", 24), ("7d", 168), ("30d", 720)):
        body = (await admin_http.get("/api/v1/admin/metrics", params={"range": window})).json()
        assert body["range"] == window and body["bucket_seconds"] == 3600
        stamps = [datetime.fromisoformat(point["hour"]) for point in body["series"]]
        assert len(stamps) == hours
        assert all(later - earlier == timedelta(hours=1) for earlier, later in zip(stamps, stamps[1:], strict=False))
        assert stamps[-1] == hour_of(datetime.now(UTC)) or stamps[-1] == hour_of(datetime.now(UTC)) - timedelta(hours=1)


async def test_real_uploads_and_jobs_show_and_survive_the_purge(
    admin_http: httpx.AsyncClient, user_http: httpx.AsyncClient, metrics_stack: Stack, resources: Resources
) -> None:
    before = (await admin_http.get("/api/v1/admin/metrics")).json()
    assert before["health"] == {"postgres": "ok", "redis": "ok", "storage": "ok", "workers": "ok"}

    data = rows_csv(2500)
    stored = await user_http.put("/api/v1/files/dashboard.csv", content=data)
    assert stored.status_code == 201, stored.text
    job = await wait_job(user_http, stored.json()["job_id"])
    assert job["state"] == "completed" and job["rows_ok"] == 2500
    # A refused type leaves no record; a wrong checksum does (failed, with the reason): that one counts.
    assert (await user_http.put("/api/v1/files/picture.csv", content=PNG)).status_code == 415
    mismatch = await user_http.put("/api/v1/files/bad.csv", content=data, headers={"X-Content-SHA256": "0" * 64})
    assert mismatch.status_code == 422

    after_body = (await admin_http.get("/api/v1/admin/metrics")).json()
    after, was = totals(after_body), totals(before)
    assert after["uploads"] - was["uploads"] >= 1
    assert after["bytes"] - was["bytes"] >= len(data)
    assert after["rows"] - was["rows"] >= 2500
    assert after["upload_failures"] - was["upload_failures"] >= 1
    cards = after_body["cards"]
    assert cards["files_today"] >= 1 and cards["bytes_today"] >= len(data)
    assert cards["rows_ingested"] >= 2500
    assert 0 < cards["upload_success_rate"] < 1
    assert cards["median_upload_mib_s"] is not None and cards["median_upload_mib_s"] > 0
    assert cards["jobs_by_state"].get("completed", 0) >= 1
    assert cards["queue_depth"] == 0  # its worker took the job
    assert isinstance(cards["live_sessions"], int) and isinstance(cards["incomplete_multipart_uploads"], int)

    # The stack's worker runs the rollup (the message its scheduler sends every 5 minutes), which
    # counts this hour; then the purge deletes the finished jobs.
    hours = [hour_of(datetime.now(UTC)) - timedelta(hours=1), hour_of(datetime.now(UTC))]
    finished = datetime.fromisoformat(str(job["finished_at"]))
    broker = make_broker(metrics_stack.settings)
    try:
        broker.enqueue(dramatiq.Message(queue_name=MAINTENANCE_QUEUE, actor_name="roll_up_metrics", args=(), kwargs={}, options={}))
    finally:
        broker.close()
    rolled: dict[datetime, HourlyMetrics] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        async with resources.sessionmaker() as session:
            rows = await session.scalars(select(HourlyMetrics).where(HourlyMetrics.hour.in_(hours)))
            rolled = {row.hour: row for row in rows}
        if rolled.get(hour_of(finished)) is not None and rolled[hour_of(finished)].updated_at > finished:
            break
        await asyncio.sleep(0.5)
    assert hour_of(finished) in rolled, "the worker did not run roll_up_metrics"
    assert sum(row.rows for row in rolled.values()) >= 2500
    assert sum(row.uploads for row in rolled.values()) >= 1
    await asyncio.sleep(1.2)
    await purge_old_jobs(SimpleNamespace(sessionmaker=resources.sessionmaker, settings=resources.settings.replace(job_retention=1)))  # type: ignore[arg-type]
    assert (await user_http.get(f"/api/v1/jobs/{job['id']}")).status_code == 404
    async with resources.sessionmaker() as session:
        assert await session.get(Job, job["id"]) is None
        live_rows = sum([(await session.execute(hour_totals(hour, hour + timedelta(hours=1)))).one()[3] for hour in hours])
    assert live_rows < sum(row.rows for row in rolled.values())  # the live tables forgot them ...

    survived = (await admin_http.get("/api/v1/admin/metrics")).json()
    assert totals(survived)["rows"] >= after["rows"]  # ... the dashboard did not
    assert survived["cards"]["rows_ingested"] >= cards["rows_ingested"]
    assert totals(survived)["uploads"] >= after["uploads"]

    # A rolled-up hour three days ago is history for 7 d, not for 24 h; one past the retention is deleted.
    current = hour_of(datetime.now(UTC))
    old, ancient = current - timedelta(hours=72), current - timedelta(days=100)
    async with resources.sessionmaker() as session:
        await session.execute(delete(HourlyMetrics).where(HourlyMetrics.hour.in_([old, ancient])))
        for hour in (old, ancient):
            session.add(HourlyMetrics(hour=hour, uploads=7, bytes=7000, upload_failures=1, rows=700, rows_rejected=0, jobs_completed=7, job_failures=2))
        await session.commit()
    week = (await admin_http.get("/api/v1/admin/metrics", params={"range": "7d"})).json()
    point = next(p for p in week["series"] if datetime.fromisoformat(p["hour"]) == old)
    assert (point["uploads"], point["rows"], point["job_failures"]) == (7, 700, 2)
    day = (await admin_http.get("/api/v1/admin/metrics", params={"range": "24h"})).json()
    assert all(datetime.fromisoformat(p["hour"]) != old for p in day["series"])
    await roll_up(resources.sessionmaker, resources.settings)
    async with resources.sessionmaker() as session:
        assert await session.get(HourlyMetrics, ancient) is None
        assert await session.get(HourlyMetrics, old) is not None
        await session.execute(delete(HourlyMetrics).where(HourlyMetrics.hour == old))
        await session.commit()


async def test_an_api_without_store_or_worker_says_so_and_counts_its_queue(resources: Resources, metrics_stack: Stack) -> None:
    """Its object store does not answer and no worker shares its Redis namespace: the answer is still
    200, health names both, the bucket card is 0, and the queue card counts the broker's waiting ids."""
    settings = metrics_stack.settings.replace(s3_endpoint="127.0.0.1:9", redis_prefix=f"{metrics_stack.settings.redis_prefix}-alone")
    key = queue_key(settings, PROCESS_QUEUE)
    await resources.redis.rpush(key, "queued-1", "queued-2", "queued-3")
    server = ApiServer(settings)
    try:
        async with await _client(Stack(settings, server, None), resources, admin=True) as http:
            response = await http.get("/api/v1/admin/metrics")
    finally:
        server.stop()
        await resources.redis.delete(key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["health"]["postgres"] == "ok" and body["health"]["redis"] == "ok"
    assert body["health"]["storage"] != "ok" and body["health"]["workers"] != "ok"
    assert "worker" in body["health"]["workers"]
    assert body["cards"]["incomplete_multipart_uploads"] == 0
    assert body["cards"]["queue_depth"] == 3
