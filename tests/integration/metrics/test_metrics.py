"""Domain metrics on the API's and the workers' /metrics after real uploads and jobs; the token; ports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dramatiq
import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from app.auth import hash_key
from app.resources import Resources
from db.models import ApiKey, File, FileStatus, UploadSession
from db.settings import Settings
from tests.integration.jobs.conftest import Worker, wait_job
from tests.integration.metrics.conftest import TOKEN, LoggedApi
from tests.support.servers import free_port
from workers.broker import make_broker
from workers.contracts import MAINTENANCE_QUEUE

CSV = b"a,b\n1,2\n3\n4,5\n"
"""Two rows stored, one rejected (it has one field of two)."""


def value(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` that carry ``labels``; None when there is none."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(found) if found else None


async def scrape(url: str, *, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(url, headers=headers)


async def scrape_until(url: str, check: Callable[[str], bool], timeout: float = 20.0) -> str:
    """Worker metrics reach the files a scrape reads as the job ends: poll for them."""
    deadline = time.monotonic() + timeout
    while True:
        response = await scrape(url)
        assert response.status_code == 200, response.text
        if check(response.text) or time.monotonic() > deadline:
            return response.text
        await asyncio.sleep(0.2)


async def chunked_upload(client: httpx.AsyncClient, body: bytes) -> dict[str, object]:
    created = await client.post("/api/v1/uploads", json={"filename": "chunked.csv", "size": len(body)})
    assert created.status_code == 201, created.text
    upload_id = created.json()["id"]
    chunk = await client.put(f"/api/v1/uploads/{upload_id}/chunks/0", content=body)
    assert chunk.status_code == 200, chunk.text
    done = await client.post(f"/api/v1/uploads/{upload_id}/complete")
    assert done.status_code == 200, done.text
    return done.json()


async def test_uploads_and_jobs_show_on_both_metrics_endpoints(
    metrics_settings: Settings,
    start_api: Callable[[Settings], LoggedApi],
    start_worker: Callable[..., tuple[Worker, int]],
    key: str,
) -> None:
    api = start_api(metrics_settings)
    worker, port = start_worker(metrics_settings)
    # The gauge counts every owner's open sessions in the database other tests share.
    open_before = value((await scrape(f"{api.url}/metrics")).text, "sluice_upload_sessions_open", route="chunked") or 0
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        single = await client.put("/api/v1/files/single.csv", content=CSV)
        assert single.status_code == 201, single.text
        chunked = await chunked_upload(client, CSV)
        jobs = [await wait_job(client, str(record["job_id"])) for record in (single.json(), chunked)]
    assert [(j["state"], j["rows_ok"], j["rows_rejected"]) for j in jobs] == [("completed", 2, 1)] * 2

    scraped = await scrape(f"{api.url}/metrics")
    assert scraped.status_code == 200, api.output()[-3000:]
    text = scraped.text
    assert value(text, "sluice_uploads_total", route="single", outcome="stored") == 1
    assert value(text, "sluice_uploads_total", route="chunked", outcome="stored") == 1
    assert value(text, "sluice_upload_size_bytes_sum", route="single", kind="csv") == len(CSV)
    assert value(text, "sluice_upload_size_bytes_count", route="chunked", kind="csv") == 1
    assert value(text, "sluice_upload_duration_seconds_count", route="single", kind="csv") == 1
    assert value(text, "sluice_upload_received_bytes_total", route="single") == len(CSV)
    assert value(text, "sluice_upload_received_bytes_total", route="chunked") == len(CSV)
    for dependency in ("postgres", "redis", "s3"):
        assert value(text, "sluice_dependency_up", dependency=dependency) == 1, api.output()[-3000:]
    assert (value(text, "sluice_upload_sessions_open", route="chunked") or 0) <= open_before
    assert value(text, "sluice_queue_depth", queue="process") == 0
    assert value(text, "sluice_event_watchers") == 0
    assert (value(text, "sluice_requests_total") or 0) >= 4, "Litestar's HTTP figures are still there"

    def finished(text: str) -> bool:
        return value(text, "sluice_jobs_total", state="completed") == 2

    text = await scrape_until(f"http://127.0.0.1:{port}/metrics", finished)
    assert value(text, "sluice_jobs_total", state="completed") == 2
    assert value(text, "sluice_rows_stored_total", kind="csv") == 4
    assert value(text, "sluice_rows_rejected_total", kind="csv") == 2
    assert value(text, "sluice_job_duration_seconds_count", kind="csv", state="completed") == 2
    assert (value(text, "sluice_job_duration_seconds_sum", kind="csv", state="completed") or 0) > 0
    assert value(text, "sluice_queue_depth", queue="process") == 0
    assert (value(text, "dramatiq_messages_total", actor_name="process_file") or 0) >= 2
    assert (value(text, "sluice_worker_resident_memory_bytes") or 0) > 10 * 1024 * 1024

    # Every line the worker wrote is a JSON object; each job's start and end carry its figures.
    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    for job in jobs:
        started = [e for e in lines if e["msg"] == "job started" and e.get("job_id") == job["id"]]
        ended = [e for e in lines if e["msg"] == "job completed" and e.get("job_id") == job["id"]]
        assert len(started) == 1 and len(ended) == 1, (started, ended)
        assert started[0]["file_id"] == ended[0]["file_id"] == job["file_id"]
        assert ended[0]["rows"] == 2 and ended[0]["rows_rejected"] == 1 and ended[0]["state"] == "completed"
        assert 0 <= started[0]["duration_s"] <= ended[0]["duration_s"] < 60


async def test_queue_depth_and_age_count_jobs_no_worker_takes(
    metrics_settings: Settings, start_api: Callable[[Settings], LoggedApi], key: str
) -> None:
    api = start_api(metrics_settings)
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for name in ("q1.csv", "q2.csv"):
            assert (await client.put(f"/api/v1/files/{name}", content=CSV)).status_code == 201
    await asyncio.sleep(1.2)
    text = (await scrape(f"{api.url}/metrics")).text
    assert value(text, "sluice_queue_depth", queue="process") == 2
    assert 1.0 <= (value(text, "sluice_queue_oldest_seconds", queue="process") or 0) < 60


async def test_metrics_ask_for_the_token_on_the_api_and_the_worker(
    metrics_settings: Settings,
    start_api: Callable[[Settings], LoggedApi],
    start_worker: Callable[..., tuple[Worker, int]],
) -> None:
    api = start_api(metrics_settings)
    _, port = start_worker(metrics_settings)
    for url in (f"{api.url}/metrics", f"http://127.0.0.1:{port}/metrics"):
        for token in (None, "wrong", TOKEN[:-1], TOKEN + "x"):
            refused = await scrape(url, token=token)
            assert refused.status_code == 401, (url, token)
            assert "SLUICE_METRICS_TOKEN" in refused.json()["detail"]
            assert "sluice_" not in refused.text
        allowed = await scrape(url)
        assert allowed.status_code == 200 and "sluice_queue_depth" in allowed.text, url


async def test_the_api_serves_metrics_on_their_own_port_when_asked(
    metrics_settings: Settings, start_api: Callable[[Settings], LoggedApi]
) -> None:
    port = free_port()
    api = start_api(metrics_settings.replace(metrics_port=port))
    assert (await scrape(f"{api.url}/metrics")).status_code == 404
    assert (await scrape(f"http://127.0.0.1:{port}/metrics", token=None)).status_code == 401
    own = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert own.status_code == 200 and own.headers["content-type"].startswith("text/plain")
    assert value(own.text, "sluice_dependency_up", dependency="postgres") == 1
    assert (await scrape(f"http://127.0.0.1:{port}/other")).status_code == 404


async def test_two_workers_on_one_host_each_serve_metrics_on_their_own_port(
    metrics_settings: Settings,
    start_api: Callable[[Settings], LoggedApi],
    start_worker: Callable[..., tuple[Worker, int]],
    key: str,
) -> None:
    api = start_api(metrics_settings)
    first, first_port = start_worker(metrics_settings)
    second, second_port = start_worker(metrics_settings, worker_heartbeat_timeout=6)
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        uploads = [await client.put(f"/api/v1/files/two{i}.csv", content=CSV) for i in range(6)]
        for response in uploads:
            assert response.status_code == 201, response.text
            assert (await wait_job(client, response.json()["job_id"]))["state"] == "completed"

    def counted(text: str) -> float:
        return value(text, "sluice_jobs_total", state="completed") or 0

    texts = [(await scrape(f"http://127.0.0.1:{p}/metrics")).text for p in (first_port, second_port)]
    for text in texts:
        assert value(text, "sluice_queue_depth", queue="process") is not None
    # Each worker counts only its own jobs; together, every job once.
    deadline = time.monotonic() + 20
    while sum(counted(t) for t in texts) < 6 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        texts = [(await scrape(f"http://127.0.0.1:{p}/metrics")).text for p in (first_port, second_port)]
    assert sum(counted(t) for t in texts) == 6
    for worker in (first, second):
        assert "Address already in use" not in worker.output()
        assert '"worker metrics served"' in worker.output()


async def test_refusals_are_logged_with_the_key_id_never_the_key(
    metrics_settings: Settings, start_api: Callable[[Settings], LoggedApi], key: str, resources: Resources
) -> None:
    async with resources.sessionmaker() as session:
        key_id = str(await session.scalar(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))))
    api = start_api(metrics_settings.replace(max_file_size=1000))
    bogus = "slk_" + hashlib.sha256(b"not a key").hexdigest()[:40]
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        assert (await http.get("/api/v1/files", headers={"Authorization": f"Bearer {bogus}"})).status_code == 401
        owner = {"Authorization": f"Bearer {key}"}
        too_big = await http.put("/api/v1/files/big.csv", content=b"a,b\n" + b"1,2\n" * 400, headers=owner)
        assert too_big.status_code == 413, too_big.text
        unsupported = await http.put("/api/v1/files/photo.csv", content=b"\x89PNG\r\n\x1a\n" + bytes(200), headers=owner)
        assert unsupported.status_code == 415, unsupported.text
        forbidden = await http.get("/api/v1/admin/stats", headers=owner)
        assert forbidden.status_code == 403, forbidden.text
        text = (await scrape(f"{api.url}/metrics")).text
    assert value(text, "sluice_refusals_total", status="401") == 1
    assert value(text, "sluice_refusals_total", status="413") == 1
    assert value(text, "sluice_refusals_total", status="415") == 1
    assert value(text, "sluice_refusals_total", status="403") == 1

    await asyncio.sleep(0.2)
    output = api.output()
    assert bogus not in output and key not in output
    assert bogus[4:] not in output and key[4:] not in output
    # uvicorn's first two lines come before the app sets up logging; every later line is JSON.
    plain = [line for line in output.splitlines() if line and not line.startswith("{")]
    assert len(plain) == 2 and "Started server process" in plain[0] and "Waiting for application" in plain[1], plain
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    refused = [e for e in entries if e["msg"] == "request refused"]
    by_status = {e["status"]: e for e in refused}
    assert by_status[401]["key_prefix"] == bogus[:10] and "key_id" not in by_status[401]
    assert by_status[401]["path"] == "/api/v1/files"
    for status in (413, 415, 403):
        assert by_status[status]["key_id"] == key_id, by_status[status]


def _stored_by(folder: Path) -> set[str]:
    """Process ids whose metrics files have counted a stored upload."""
    pids = set()
    for path in folder.glob("counter_*.db"):
        with contextlib.suppress(OSError):
            if b"sluice_uploads" in path.read_bytes():
                pids.add(path.stem.rsplit("_", 1)[-1])
    return pids


async def test_several_api_processes_answer_for_all_with_a_multiprocess_folder(
    metrics_settings: Settings, start_api: Callable[..., LoggedApi], key: str, tmp_path: Path
) -> None:
    port = free_port()
    api = start_api(
        metrics_settings.replace(metrics_port=port),
        workers=2,
        env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
    )
    uploads = 0
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        # A new connection each time, until both processes have taken some (the kernel picks).
        while uploads < 12 or (len(_stored_by(tmp_path)) < 2 and uploads < 80):
            response = await client.put(f"/api/v1/files/mp{uploads}.csv", content=CSV, headers={"Connection": "close"})
            assert response.status_code == 201, response.text
            uploads += 1
    assert len(_stored_by(tmp_path)) == 2, "both processes stored uploads"
    for _ in range(6):
        text = (await scrape(f"http://127.0.0.1:{port}/metrics")).text
        assert value(text, "sluice_uploads_total", route="single", outcome="stored") == uploads
        assert value(text, "sluice_upload_received_bytes_total", route="single") == uploads * len(CSV)
        assert value(text, "sluice_dependency_up", dependency="redis") == 1


async def test_the_workers_count_the_uploads_their_sweepers_end(
    metrics_settings: Settings,
    start_api: Callable[..., LoggedApi],
    start_worker: Callable[..., tuple[Worker, int]],
    key: str,
    resources: Resources,
) -> None:
    api = start_api(metrics_settings)
    worker, port = start_worker(metrics_settings)
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        created = await client.post("/api/v1/uploads", json={"filename": "idle.csv", "size": 10_000_000, "process": False})
        assert created.status_code == 201, created.text
        stored = await client.put("/api/v1/files/stalled.csv", params={"process": "false"}, content=CSV)
        assert stored.status_code == 201, stored.text
    # An idle session past its expiry, and a single-shot upload whose API process stopped mid-body.
    async with resources.sessionmaker() as session:
        await session.execute(
            update(UploadSession)
            .where(UploadSession.id == uuid.UUID(created.json()["id"]))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await session.execute(
            update(File)
            .where(File.id == uuid.UUID(stored.json()["id"]))
            .values(status=FileStatus.receiving, touched_at=datetime.now(UTC) - timedelta(hours=1))
        )
        await session.commit()
    broker = make_broker(metrics_settings)
    for actor in ("expire_upload_sessions", "sweep_stalled_uploads"):
        broker.enqueue(dramatiq.Message(queue_name=MAINTENANCE_QUEUE, actor_name=actor, args=(), kwargs={}, options={}))

    def swept(text: str) -> bool:
        return value(text, "sluice_uploads_total", route="single", outcome="failed") == 1 and (
            value(text, "sluice_uploads_total", route="chunked", outcome="expired") == 1
        )

    text = await scrape_until(f"http://127.0.0.1:{port}/metrics", swept, timeout=60)
    assert value(text, "sluice_uploads_total", route="chunked", outcome="expired") == 1, worker.output()[-3000:]
    assert value(text, "sluice_uploads_total", route="single", outcome="failed") == 1


async def test_open_event_streams_are_counted_while_they_are_open(
    metrics_settings: Settings, start_api: Callable[..., LoggedApi], key: str
) -> None:
    api = start_api(metrics_settings)

    async def watchers() -> float | None:
        return value((await scrape(f"{api.url}/metrics")).text, "sluice_event_watchers")

    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        created = await client.post("/api/v1/uploads", json={"filename": "watched.csv", "size": 1000})
        assert created.status_code == 201, created.text
        streams = [client.stream("GET", f"/api/v1/uploads/{created.json()['id']}/events") for _ in range(3)]
        opened = [await stream.__aenter__() for stream in streams]
        # One reader per stream, kept: a dropped async iterator is closed, and its stream with it.
        readers = [response.aiter_text() for response in opened]
        for response, reader in zip(opened, readers, strict=True):
            assert response.status_code == 200
            assert "event: snapshot" in await anext(reader)
        assert await watchers() == 3
        for stream in streams:
            await stream.__aexit__(None, None, None)
        deadline = time.monotonic() + 10
        while await watchers() != 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await watchers() == 0


async def test_a_worker_whose_metrics_port_is_taken_says_so_and_runs_on(
    metrics_settings: Settings, start_worker: Callable[..., tuple[Worker, int]]
) -> None:
    _, port = start_worker(metrics_settings)
    second = Worker(metrics_settings.replace(worker_metrics_port=port))
    try:
        deadline = time.monotonic() + 20
        while "worker metrics server not started" not in second.output():
            assert time.monotonic() < deadline, second.output()
            await asyncio.sleep(0.1)
        refusal = next(json.loads(line) for line in second.output().splitlines() if "metrics server not started" in line)
        assert refusal["port"] == port and "SLUICE_WORKER_METRICS_PORT" in refusal["msg"]
        await asyncio.sleep(2)
        assert second.process.poll() is None, "the worker runs on without metrics"
        assert (await scrape(f"http://127.0.0.1:{port}/metrics")).status_code == 200
    finally:
        second.stop()
