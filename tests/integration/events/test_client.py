"""``follow_job``: the client side of a job's event stream, as ``sluice upload`` uses it."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select

from app.client.events import follow_job
from app.resources import Resources
from db.models import File, Job
from tests.integration.events.support import insert_job, owner_of, publish_job
from tests.support.servers import REPO, ApiServer


async def test_follow_job_drives_a_bar_to_the_end(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    await publish_job(resources, job, "state", "processing")
    progress = Progress(console=Console(file=io.StringIO()))
    following = asyncio.create_task(follow_job(client, str(job.id), progress))

    async def bar() -> tuple[float | None, float, str]:
        task = progress.tasks[0]
        return task.total, task.completed, str(task.description)

    while not progress.tasks or "processing" not in (await bar())[2]:
        await asyncio.sleep(0.02)
    await publish_job(resources, job, "progress", "processing", rows_ok=400, bytes_read=500, rate=800.0, eta_s=1.0)
    while (await bar())[1] != 500:
        await asyncio.sleep(0.02)
    assert await bar() == (1000, 500, "processing: processing, 400 rows, 800 rows/s, ETA 1 s")

    await publish_job(
        resources, job, "completed", "completed", rows_ok=800, rows_rejected=2, bytes_read=1000,
        dataset_table="datasets.f_abc",
    )
    result = await asyncio.wait_for(following, 10)
    assert (result.state, result.rows_ok, result.rows_rejected) == ("completed", 800, 2)
    assert result.describe() == "800 rows in table datasets.f_abc (2 rejected)"
    assert not progress.tasks[0].visible


async def test_follow_job_waits_through_heartbeats(key: str, resources: Resources) -> None:
    server = ApiServer(resources.settings.replace(heartbeat=0.1))
    try:
        job = await insert_job(resources, await owner_of(resources, key))
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
            following = asyncio.create_task(follow_job(http, str(job.id), Progress(console=Console(file=io.StringIO()))))
            await asyncio.sleep(0.6)
            assert not following.done()
            await publish_job(resources, job, "completed", "completed", rows_ok=3)
            assert (await asyncio.wait_for(following, 10)).rows_ok == 3
    finally:
        server.stop()


async def test_follow_job_of_another_owner_says_why(other_client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    result = await follow_job(other_client, str(job.id), Progress(console=Console(file=io.StringIO())))
    assert result.state == "unknown"
    assert result.error is not None and str(job.id) in result.error


async def _cli(api: ApiServer, key: str, cache: Path, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env |= {"SLUICE_URL": api.url, "SLUICE_KEY": key, "XDG_CACHE_HOME": str(cache), "COLUMNS": "200"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "upload", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )


async def _job_of(resources: Resources, filename: str) -> Job:
    for _ in range(200):
        async with resources.sessionmaker() as session:
            job = await session.scalar(
                select(Job).join(File, File.id == Job.file_id).where(File.original_filename == filename)
            )
        if job is not None:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"no job for {filename}")


async def test_sluice_upload_follows_processing_to_the_table(
    api: ApiServer, key: str, resources: Resources, tmp_path: Path
) -> None:
    path = tmp_path / f"follow-{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(b"id,name\n" + b"".join(b"%d,row %d\n" % (i, i) for i in range(100)))
    process = await _cli(api, key, tmp_path / "cache", str(path))

    job = await _job_of(resources, path.name)
    await publish_job(resources, job, "state", "processing")
    await publish_job(resources, job, "progress", "processing", rows_ok=50, bytes_read=500, rate=100.0)
    await publish_job(
        resources, job, "completed", "completed", rows_ok=98, rows_rejected=2, bytes_read=1000,
        dataset_table="datasets.f_followed",
    )
    out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 0, out
    assert f"{path.name}: 98 rows in table datasets.f_followed (2 rejected)" in out

    failing = tmp_path / f"fail-{uuid.uuid4().hex[:8]}.csv"
    failing.write_bytes(path.read_bytes())
    process = await _cli(api, key, tmp_path / "cache", str(failing))
    job = await _job_of(resources, failing.name)
    await publish_job(resources, job, "failed", "failed", rows_ok=0, error="column 'id' is not an integer on row 3")
    out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 1, out
    assert "processing failed after 0 rows: column 'id' is not an integer on row 3" in out


async def test_sluice_upload_no_wait_prints_the_job(api: ApiServer, key: str, resources: Resources, tmp_path: Path) -> None:
    path = tmp_path / f"nowait-{uuid.uuid4().hex[:8]}.csv"
    path.write_bytes(b"id\n1\n2\n")
    process = await _cli(api, key, tmp_path / "cache", str(path), "--no-wait")
    out = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    job = await _job_of(resources, path.name)
    assert process.returncode == 0, out
    assert f"{path.name}: processing as job {job.id}" in out
