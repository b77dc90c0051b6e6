"""``follow_job``: the client side of a job's event stream, as ``sluice upload`` uses it."""

from __future__ import annotations

import asyncio
import io

import httpx
from rich.console import Console
from rich.progress import Progress

from app.client.events import follow_job
from app.resources import Resources
from tests.integration.events.support import insert_job, owner_of, publish_job


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


async def test_follow_job_of_another_owner_says_why(other_client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    result = await follow_job(other_client, str(job.id), Progress(console=Console(file=io.StringIO())))
    assert result.state == "unknown"
    assert result.error is not None and str(job.id) in result.error
