"""Job, batch and upload event streams against a real API process, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from app.auth import stream_token
from app.events.fanout import REDIS_CONNECTIONS
from app.resources import Resources
from sqlalchemy import delete, update

from db.models import Job, JobState
from tests.integration.events.support import (
    clients_of,
    data,
    eventually,
    events,
    insert_job,
    owner_of,
    publish_job,
    redis_connections,
    subscribers,
)
from tests.integration.uploads.support import CHUNK, csv_bytes, start
from tests.support.servers import ApiServer
from workers.contracts import job_channel, snapshot_key


@pytest.fixture(scope="module")
def fast_api(resources: Resources) -> Iterator[ApiServer]:
    """An API whose idle streams send a heartbeat every 0.2 s."""
    server = ApiServer(resources.settings.replace(heartbeat=0.2))
    yield server
    server.stop()


def redis_port(resources: Resources) -> int:
    return urlsplit(resources.settings.redis_url).port or 6379


async def test_snapshot_then_live_events_in_order(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    await publish_job(resources, job, "state", "processing")

    async with events(client, f"/api/v1/jobs/{job.id}/events") as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        snapshot = await stream.next()
        assert (snapshot.event, snapshot.id, snapshot.retry) == ("snapshot", "1", 3000)
        assert data(snapshot)["state"] == "processing"

        await publish_job(resources, job, "progress", "processing", rows_ok=10, bytes_read=400, progress=40.0)
        await publish_job(resources, job, "progress", "processing", rows_ok=20, bytes_read=800, progress=80.0)
        await publish_job(resources, job, "completed", "completed", rows_ok=25, bytes_read=1000, progress=100.0)
        rest = await stream.rest()

    assert [(e.event, e.id) for e in rest] == [("progress", "2"), ("progress", "3"), ("completed", "4")]
    assert [data(e)["rows_ok"] for e in rest] == [10, 20, 25]


async def test_snapshot_comes_from_the_row_when_nothing_was_published(
    client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))

    async with events(client, f"/api/v1/jobs/{job.id}/events") as stream:
        snapshot = await stream.next()
        assert (snapshot.event, snapshot.id) == ("snapshot", "0")
        assert (data(snapshot)["state"], data(snapshot)["job_id"]) == ("pending", str(job.id))

        await publish_job(resources, job, "cancelled", "cancelled")
        rest = await stream.rest()

    assert [(e.event, e.id) for e in rest] == [("cancelled", "1")]


async def test_late_subscriber_to_a_finished_job_gets_snapshot_and_end(
    client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key), state=JobState.completed, rows_ok=25)
    await publish_job(resources, job, "progress", "processing", rows_ok=10)
    await publish_job(resources, job, "completed", "completed", rows_ok=25, dataset_table="datasets.f_x")

    async with events(client, f"/api/v1/jobs/{job.id}/events") as stream:
        received = await stream.rest()

    assert [(e.event, e.id) for e in received] == [("snapshot", "2"), ("completed", "2")]
    assert data(received[1])["dataset_table"] == "datasets.f_x"


async def test_finished_row_wins_over_a_stale_snapshot(
    client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    """A job that ended without its terminal event reaching Redis still ends its streams."""
    owner = await owner_of(resources, key)
    job = await insert_job(resources, owner, state=JobState.failed, error="the file is not valid UTF-8")
    await publish_job(resources, job, "progress", "processing", rows_ok=10)

    async with events(client, f"/api/v1/jobs/{job.id}/events", **{"Last-Event-ID": "1"}) as stream:
        received = await stream.rest()

    assert [(e.event, e.id) for e in received] == [("snapshot", "2"), ("failed", "2")]
    assert data(received[1])["error"] == "the file is not valid UTF-8"

    expired = await insert_job(resources, owner, state=JobState.completed, rows_ok=3)
    async with events(client, f"/api/v1/jobs/{expired.id}/events") as stream:
        received = await stream.rest()
    assert [(e.event, e.id, data(e)["rows_ok"]) for e in received] == [("snapshot", "1", 3), ("completed", "1", 3)]


async def test_reconnect_with_last_event_id(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    for rows in (10, 20, 30):
        await publish_job(resources, job, "progress", "processing", rows_ok=rows)
    path = f"/api/v1/jobs/{job.id}/events"

    async with events(client, path, **{"Last-Event-ID": "2"}) as stream:
        snapshot = await stream.next()
        assert (snapshot.event, snapshot.id, data(snapshot)["rows_ok"]) == ("snapshot", "3", 30)
        await publish_job(resources, job, "completed", "completed", rows_ok=40)
        assert [(e.event, e.id) for e in await stream.rest()] == [("completed", "4")]

    # A client that saw the terminal event is told to stop reconnecting, and gets nothing again.
    for seen in ("4", "7"):
        response = await client.get(path, headers={"Last-Event-ID": seen})
        assert (response.status_code, response.content) == (204, b"")
    # One that missed it gets the end at once.
    async with events(client, path, **{"Last-Event-ID": "3"}) as stream:
        assert [(e.event, e.id) for e in await stream.rest()] == [("snapshot", "4"), ("completed", "4")]

    response = await client.get(path, headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 422
    assert "Last-Event-ID" in response.json()["detail"]


async def test_ids_never_go_below_last_event_id(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    """Even when the counters were lost (Redis flushed), a reconnecting client never sees ids go back."""
    job = await insert_job(resources, await owner_of(resources, key))
    async with events(client, f"/api/v1/jobs/{job.id}/events", **{"Last-Event-ID": "50"}) as stream:
        assert (await stream.next()).id == "50"
        await publish_job(resources, job, "progress", "processing")
        await publish_job(resources, job, "completed", "completed")
        assert [e.id for e in await stream.rest()] == ["51", "52"]


async def test_heartbeat_and_catch_up_on_idle_stream(key: str, resources: Resources, fast_api: ApiServer) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        httpx.AsyncClient(base_url=fast_api.url, headers=headers, timeout=10) as http,
        http.stream("GET", f"/api/v1/jobs/{job.id}/events") as response,
    ):
        lines = response.aiter_lines()
        async with asyncio.timeout(5):
            assert await anext(lines) == "id: 0"
            while await anext(lines) != ": heartbeat":
                pass
            # An event pub/sub never delivered: only the snapshot key has it.
            await resources.redis.set(
                snapshot_key(job_channel(resources.settings.redis_prefix, job.id)),
                b'{"seq":7,"type":"completed","job_id":"%s","batch_id":"%s","file_id":"%s","state":"completed"}'
                % (str(job.id).encode(), str(job.batch_id).encode(), str(job.file_id).encode()),
            )
            rest = [line async for line in lines]
    assert rest[rest.index("id: 7") + 1] == "event: completed"


async def test_another_owner_gets_404(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    upload = await start(client, csv_bytes(CHUNK + 10))
    paths = [
        f"/api/v1/jobs/{job.id}/events",
        f"/api/v1/batches/{job.batch_id}/events",
        f"/api/v1/uploads/{upload['id']}/events",
    ]
    for path in paths:
        theirs = await other_client.get(path)
        missing = await other_client.get(path.replace(path.split("/")[4], str(uuid.uuid4())))
        assert theirs.status_code == missing.status_code == 404, path
        assert theirs.headers["content-type"].startswith("application/json")
        assert theirs.json()["detail"].split()[:2] == missing.json()["detail"].split()[:2]


async def test_upload_session_events(client: httpx.AsyncClient) -> None:
    body = csv_bytes(2 * CHUNK + 100)
    upload = await start(client, body, process=False)
    async with events(client, f"/api/v1/uploads/{upload['id']}/events") as stream:
        snapshot = await stream.next()
        assert snapshot.event == "snapshot"
        assert data(snapshot) | {"received_chunks": 0, "total_chunks": 3, "state": "receiving"} == data(snapshot)
        for index in (2, 0, 1):
            chunk = body[index * CHUNK : (index + 1) * CHUNK]
            response = await client.put(f"/api/v1/uploads/{upload['id']}/chunks/{index}", content=chunk)
            assert response.status_code < 300, response.text
            assert (await stream.next()).event == "chunk"
        response = await client.post(f"/api/v1/uploads/{upload['id']}/complete")
        assert response.status_code < 300, response.text
        rest = await stream.rest()
    assert [e.event for e in rest] == ["completed"]
    assert data(rest[0])["file_id"] == response.json()["id"]
    assert data(rest[0])["bytes_received"] == len(body)

    late = await client.get(f"/api/v1/uploads/{upload['id']}/events", headers={"Last-Event-ID": rest[0].id})
    assert late.status_code == 204


async def test_batch_events_are_aggregated(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    owner = await owner_of(resources, key)
    batch = uuid.uuid4()
    first, second = [await insert_job(resources, owner, batch_id=batch) for _ in range(2)]
    await publish_job(resources, first, "state", "processing")

    async with events(client, f"/api/v1/batches/{batch}/events") as stream:
        snapshot = await stream.next()
        state = data(snapshot)
        assert (snapshot.id, state["state"], state["jobs_total"]) == ("1", "processing", 2)
        assert state["jobs_by_state"] == {"processing": 1, "pending": 1}
        assert {j["job_id"] for j in state["jobs"]} == {str(first.id), str(second.id)}

        await publish_job(resources, first, "progress", "processing", rows_ok=5, bytes_read=500, progress=50.0)
        progress = await stream.next()
        assert (progress.event, progress.id, data(progress)["progress"]) == ("progress", "2", 25.0)
        assert data(progress)["job"]["job_id"] == str(first.id)

        await publish_job(resources, first, "completed", "completed", rows_ok=10, bytes_read=1000, progress=100.0)
        await publish_job(resources, second, "failed", "failed", error="bad")
        rest = await stream.rest()

    assert [(e.event, e.id) for e in rest] == [("progress", "3"), ("failed", "4")]
    assert data(rest[-1]) | {"rows_ok": 10, "jobs_by_state": {"completed": 1, "failed": 1}} == data(rest[-1])
    late = await client.get(f"/api/v1/batches/{batch}/events", headers={"Last-Event-ID": "4"})
    assert late.status_code == 204


async def test_200_watchers_all_receive_the_end(key: str, resources: Resources, api: ApiServer) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    channel = job_channel(resources.settings.redis_prefix, job.id)
    before = redis_connections(api.process.pid, redis_port(resources))
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {key}"}
    snapshots = asyncio.Semaphore(0)

    async def watch(http: httpx.AsyncClient) -> list[str]:
        async with events(http, f"/api/v1/jobs/{job.id}/events") as stream:
            await stream.next(timeout=60)
            snapshots.release()
            return [e.event for e in await stream.rest(timeout=60)]

    async with httpx.AsyncClient(base_url=api.url, headers=headers, limits=limits, timeout=60) as http:
        watchers = [asyncio.create_task(watch(http)) for _ in range(200)]
        for _ in range(200):
            async with asyncio.timeout(60):
                await snapshots.acquire()
        assert await subscribers(resources.redis, channel) == 1
        during = redis_connections(api.process.pid, redis_port(resources))
        await publish_job(resources, job, "progress", "processing", rows_ok=1)
        await publish_job(resources, job, "completed", "completed", rows_ok=2)
        received = await asyncio.gather(*watchers)

    assert received == [["progress", "completed"]] * 200
    assert during - before <= REDIS_CONNECTIONS, f"{during - before} more Redis connections for 200 watchers"
    await eventually(lambda: _none_subscribed(resources.redis, [channel]))


async def test_closing_clients_releases_subscriptions(key: str, resources: Resources, fast_api: ApiServer) -> None:
    """Clients that go away mid-stream free their subscriptions at once, and leave no connection behind."""
    owner = await owner_of(resources, key)
    jobs = [await insert_job(resources, owner) for _ in range(3)]
    channels = [job_channel(resources.settings.redis_prefix, job.id) for job in jobs]
    pid, port = fast_api.process.pid, redis_port(resources)
    headers = {"Authorization": f"Bearer {key}"}
    before = await clients_of(resources.redis, pid, port)
    counts = []

    for _ in range(2):
        async with httpx.AsyncClient(base_url=fast_api.url, headers=headers, timeout=10) as http:
            async with AsyncExitStack() as open_streams:
                # Held in a list: an unreferenced reader would be collected and close its stream early.
                streams = [
                    await open_streams.enter_async_context(events(http, f"/api/v1/jobs/{job.id}/events"))
                    for job in jobs
                    for _ in range(10)
                ]
                for stream in streams:
                    await stream.next()
                assert [await subscribers(resources.redis, c) for c in channels] == [1, 1, 1]
            await eventually(lambda: _none_subscribed(resources.redis, channels), timeout=2)
        after = await clients_of(resources.redis, pid, port)
        assert not any(int(c["sub"]) for c in after), "a channel is still subscribed"
        counts.append(len(after))

    # The events client is a bounded pool (one pub/sub connection, a few snapshot readers), whatever the watchers.
    assert max(counts) - len(before) <= REDIS_CONNECTIONS, f"{len(before)} Redis connections grew to {counts}"


async def _none_subscribed(redis: Redis, channels: list[str]) -> bool:
    return all([await subscribers(redis, c) == 0 for c in channels])


async def test_shutdown_ends_open_streams_with_a_reconnect_event(key: str, resources: Resources) -> None:
    """An open stream does not hold a stopping API: it ends at once, telling the client to reconnect
    (tests/integration/proxy/test_shutdown.py follows the client to another process)."""
    server = ApiServer(resources.settings.replace(shutdown_grace=0.5))
    job = await insert_job(resources, await owner_of(resources, key))
    try:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http,
            events(http, f"/api/v1/jobs/{job.id}/events") as stream,
        ):
            await stream.next()
            started = asyncio.get_running_loop().time()
            server.process.terminate()
            await asyncio.to_thread(server.process.wait, 8)
            assert asyncio.get_running_loop().time() - started < 5
            assert [event.event for event in await stream.rest()] == ["reconnect"]
    finally:
        server.stop()


async def test_live_events_survive_a_dropped_subscriber_connection(
    client: httpx.AsyncClient, key: str, resources: Resources, api: ApiServer
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    channel = job_channel(resources.settings.redis_prefix, job.id)
    async with events(client, f"/api/v1/jobs/{job.id}/events") as stream:
        await stream.next()
        shared = [c for c in await clients_of(resources.redis, api.process.pid, redis_port(resources)) if int(c["sub"])]
        assert len(shared) == 1
        await resources.redis.client_kill(shared[0]["addr"])
        await eventually(lambda: _subscribed(resources.redis, channel))

        await publish_job(resources, job, "progress", "processing", rows_ok=5)
        # Well inside the 15 s heartbeat: delivered live by the reconnected subscriber, not by a catch-up.
        assert (await stream.next(timeout=3)).id == "1"


async def _subscribed(redis: Redis, channel: str) -> bool:
    return await subscribers(redis, channel) == 1


async def test_an_end_only_the_database_knows_ends_idle_streams(
    key: str, resources: Resources, fast_api: ApiServer
) -> None:
    """A terminal event that never reached Redis (its publish failed), or a deleted job, still ends the stream."""
    owner = await owner_of(resources, key)
    failed, deleted = await insert_job(resources, owner), await insert_job(resources, owner)
    await publish_job(resources, failed, "state", "processing")
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=fast_api.url, headers=headers, timeout=10) as http:
        async with events(http, f"/api/v1/jobs/{failed.id}/events") as stream:
            assert (await stream.next()).id == "1"
            async with resources.sessionmaker() as session:
                await session.execute(
                    update(Job).where(Job.id == failed.id).values(state=JobState.failed, error="worker lost")
                )
                await session.commit()
            rest = await stream.rest(timeout=15)
        assert [(e.event, e.id, data(e)["error"]) for e in rest] == [("failed", "2", "worker lost")]

        async with events(http, f"/api/v1/jobs/{deleted.id}/events") as stream:
            await stream.next()
            async with resources.sessionmaker() as session:
                await session.execute(delete(Job).where(Job.id == deleted.id))
                await session.commit()
            assert await stream.rest(timeout=15) == []


async def test_a_stream_link_opens_one_stream_without_a_header(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, api: ApiServer, key: str, resources: Resources
) -> None:
    """What a browser's EventSource needs: the key cannot go in a header, so a link carries a token."""
    owner = await owner_of(resources, key)
    job, other = await insert_job(resources, owner), await insert_job(resources, owner)
    await publish_job(resources, job, "completed", "completed", rows_ok=3)
    path = f"/api/v1/jobs/{job.id}/events"
    response = await client.post("/api/v1/events/links", json={"path": path, "ttl_s": 600})
    assert response.status_code == 201, response.text
    link = response.json()
    assert link["url"].startswith(f"{path}?token=")

    async with httpx.AsyncClient(base_url=api.url, timeout=10) as browser:
        async with events(browser, link["url"]) as stream:
            assert [e.event for e in await stream.rest()] == ["snapshot", "completed"]
        token = link["url"].split("token=")[1]
        refused = [
            f"/api/v1/jobs/{other.id}/events?token={token}",  # another stream
            f"/api/v1/jobs/{job.id}?token={token}",  # not a stream
            f"{path}?token={token[:-2]}xx",  # tampered
            f"{path}?token={token.split('.')[0]}.{int(token.split('.')[1]) + 60}.{token.split('.')[2]}",  # extended
            f"{path}?token=nonsense",
            f"{path}?token={stream_token(resources.settings.secret_key, uuid.UUID(hex=token.split('.')[0]), path, int(time.time()) - 1)}",
        ]
        for url in refused:
            answer = await browser.get(url)
            assert answer.status_code == 401, (url, answer.text)
            assert answer.json()["detail"]
        assert "expired" in answer.json()["detail"]

    expired = await client.post("/api/v1/events/links", json={"path": path, "ttl_s": 1})
    assert expired.status_code == 400 and "ttl_s" in expired.text
    assert (await client.post("/api/v1/events/links", json={"path": f"/api/v1/jobs/{job.id}"})).status_code == 422
    # A link to a stream the key cannot open is refused when asked for, like the stream itself.
    assert (await other_client.post("/api/v1/events/links", json={"path": path})).status_code == 404
