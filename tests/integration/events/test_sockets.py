"""The event streams over a WebSocket: the SSE routes' documents and ids, snapshot first, closed after the end."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from app.resources import Resources
from tests.integration.events.support import data, eventually, events, insert_job, owner_of, publish_job, subscribers
from tests.support.servers import ApiServer
from workers.contracts import job_channel


def ws_url(api: ApiServer, path: str) -> str:
    return api.url.replace("http://", "ws://", 1) + path


async def receive(socket: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await socket.recv())  # type: ignore[no-any-return]


async def rest(socket: ClientConnection, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Every message up to the server's close."""
    async with asyncio.timeout(timeout):
        return [json.loads(m) async for m in socket]


async def test_same_documents_and_ids_as_the_sse_stream_then_closed(
    api: ApiServer, client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    await publish_job(resources, job, "state", "processing")
    bearer = {"Authorization": f"Bearer {key}"}

    async with (
        connect(ws_url(api, f"/api/v1/jobs/{job.id}/events/ws"), additional_headers=bearer) as socket,
        events(client, f"/api/v1/jobs/{job.id}/events") as sse,
    ):
        snapshot, sse_snapshot = await receive(socket), await sse.next()
        assert (snapshot["event"], snapshot["id"]) == ("snapshot", 1)
        assert snapshot["data"] == data(sse_snapshot) and snapshot["data"]["state"] == "processing"

        await publish_job(resources, job, "progress", "processing", rows_ok=10, bytes_read=400, progress=40.0)
        await publish_job(resources, job, "completed", "completed", rows_ok=25, bytes_read=1000, progress=100.0)
        received, sse_rest = await rest(socket), await sse.rest()

    assert [(m["event"], m["id"]) for m in received] == [("progress", 2), ("completed", 3)]
    assert [m["data"] for m in received] == [data(e) for e in sse_rest]
    assert socket.close_code == 1000


async def test_batches_uploads_and_stream_links(api: ApiServer, client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    owner = await owner_of(resources, key)
    batch = uuid.uuid4()
    await insert_job(resources, owner, batch_id=batch, state="completed")
    bearer = {"Authorization": f"Bearer {key}"}
    async with connect(ws_url(api, f"/api/v1/batches/{batch}/events/ws"), additional_headers=bearer) as socket:
        received = await rest(socket)
    assert [m["event"] for m in received] == ["snapshot", "completed"]
    assert received[1]["data"]["batch_id"] == str(batch) and received[1]["data"]["jobs_by_state"] == {"completed": 1}

    job = await insert_job(resources, owner)
    link = await client.post("/api/v1/events/links", json={"path": f"/api/v1/jobs/{job.id}/events/ws"})
    assert link.status_code == 201, link.text
    async with connect(ws_url(api, link.json()["url"])) as socket:
        assert (await receive(socket))["data"]["job_id"] == str(job.id)
    other = await client.post("/api/v1/events/links", json={"path": f"/api/v1/jobs/{job.id}/events/ws"})
    elsewhere = other.json()["url"].replace(str(job.id), str(uuid.uuid4()))
    try:
        async with connect(ws_url(api, elsewhere)) as socket:
            await socket.recv()
        raise AssertionError("a link for another stream was accepted")
    except websockets.exceptions.InvalidStatus as exc:
        # A handshake refused before it is accepted is answered 403 by the server, whatever the reason.
        assert exc.response.status_code == 403

    upload = await client.post("/api/v1/uploads", json={"filename": "u.csv", "size": 10})
    assert upload.status_code == 201, upload.text
    async with connect(ws_url(api, f"/api/v1/uploads/{upload.json()['id']}/events/ws"), additional_headers=bearer) as socket:
        snapshot = await receive(socket)
        assert (snapshot["event"], snapshot["data"]["state"]) == ("snapshot", "receiving")
        assert (await client.delete(f"/api/v1/uploads/{upload.json()['id']}")).status_code == 204
        assert [m["event"] for m in await rest(socket)] == ["aborted"]


async def test_refusals_close_with_the_status_and_what_to_change(
    api: ApiServer, key: str, other_key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    url = ws_url(api, f"/api/v1/jobs/{job.id}/events/ws")
    async with connect(url, additional_headers={"Authorization": f"Bearer {other_key}"}) as socket:
        await socket.wait_closed()
    assert socket.close_code == 4404 and f"no job {job.id}" in (socket.close_reason or "")
    async with connect(url + "?last_event_id=x", additional_headers={"Authorization": f"Bearer {key}"}) as socket:
        await socket.wait_closed()
    assert socket.close_code == 4422 and "Last-Event-ID" in (socket.close_reason or "")
    try:
        async with connect(url) as socket:
            await socket.recv()
        raise AssertionError("a socket without a key was accepted")
    except websockets.exceptions.InvalidStatus as exc:
        assert exc.response.status_code == 403


async def test_300_watchers_of_one_job_all_receive_the_end(api: ApiServer, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    channel = job_channel(resources.settings.redis_prefix, job.id)
    bearer = {"Authorization": f"Bearer {key}"}
    snapshots = asyncio.Semaphore(0)

    async def watch() -> list[tuple[str, int]]:
        async with connect(ws_url(api, f"/api/v1/jobs/{job.id}/events/ws"), additional_headers=bearer, open_timeout=60) as socket:
            await receive(socket, timeout=60)
            snapshots.release()
            return [(m["event"], m["id"]) for m in await rest(socket, timeout=60)]

    watchers = [asyncio.create_task(watch()) for _ in range(300)]
    for _ in range(300):
        async with asyncio.timeout(90):
            await snapshots.acquire()
    assert await subscribers(resources.redis, channel) == 1
    await publish_job(resources, job, "progress", "processing", rows_ok=1)
    await publish_job(resources, job, "completed", "completed", rows_ok=2)
    received = await asyncio.gather(*watchers)

    assert received == [[("progress", 1), ("completed", 2)]] * 300
    await eventually(lambda: _unsubscribed(resources, channel))


async def test_a_client_that_goes_away_releases_the_subscription(api: ApiServer, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    channel = job_channel(resources.settings.redis_prefix, job.id)
    async with connect(ws_url(api, f"/api/v1/jobs/{job.id}/events/ws"), additional_headers={"Authorization": f"Bearer {key}"}) as socket:
        await receive(socket)
        assert await subscribers(resources.redis, channel) == 1
    await eventually(lambda: _unsubscribed(resources, channel))


async def _unsubscribed(resources: Resources, channel: str) -> bool:
    return await subscribers(resources.redis, channel) == 0
