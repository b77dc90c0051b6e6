"""An API process told to stop (SIGTERM) ends its event streams with a ``reconnect`` event at once,
and exits well within SLUICE_SHUTDOWN_GRACE; behind nginx the client's reconnect reaches another
process and the stream goes on from the last event id."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
import websockets
from redis.asyncio import Redis
from websockets.asyncio.client import connect

from app.resources import Resources
from tests.integration.events.support import clients_of, events, insert_job, owner_of, publish_job
from tests.support.nginx import Nginx
from tests.support.servers import ApiServer

GRACE = 30.0


@pytest.fixture
def two_apis(resources: Resources, nginx_available: None) -> Iterator[list[ApiServer]]:
    servers = [ApiServer(resources.settings.replace(shutdown_grace=GRACE)) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


async def _serving(redis: Redis, apis: list[ApiServer], redis_port: int) -> ApiServer:
    """The API process whose shared subscriber holds a channel (the one serving the open stream)."""
    for _ in range(100):
        for api in apis:
            if any(int(c.get("sub", 0)) > 0 for c in await clients_of(redis, api.process.pid, redis_port)):
                return api
        await asyncio.sleep(0.05)
    raise AssertionError("no API process subscribed the stream's channel")


async def test_sigterm_ends_a_stream_with_reconnect_and_the_process_exits_within_the_grace(
    two_apis: list[ApiServer], key: str, resources: Resources
) -> None:
    api = two_apis[0]
    job = await insert_job(resources, await owner_of(resources, key))
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        async with events(http, f"/api/v1/jobs/{job.id}/events") as stream:
            assert (await stream.next()).event == "snapshot"
            await publish_job(resources, job, "progress", "processing")
            progress = await stream.next()
            assert progress.event == "progress"
            stopped = time.monotonic()
            api.process.send_signal(signal.SIGTERM)
            rest = await stream.rest(timeout=10)
            ended = time.monotonic() - stopped
    assert [e.event for e in rest] == ["reconnect"]
    assert rest[0].id == progress.id, "the reconnect event must keep the last id, so the client resumes after it"
    assert rest[0].retry is not None and 0 < rest[0].retry <= 3000
    assert "reconnect" in msgspec.json.decode(rest[0].data)["detail"]
    assert ended < 5, f"the stream ended {ended:.1f} s after SIGTERM"
    exit_code = await asyncio.to_thread(api.process.wait, GRACE)
    exited = time.monotonic() - stopped
    # uvicorn stops gracefully, then re-raises the signal it caught: "killed by SIGTERM" is its clean exit.
    assert exit_code in (0, -signal.SIGTERM)
    assert exited < GRACE / 3, f"the API took {exited:.1f} s to exit (grace {GRACE:.0f} s)"


async def test_behind_nginx_the_client_reconnects_to_another_process_and_resumes(
    two_apis: list[ApiServer], key: str, resources: Resources
) -> None:
    proxy = Nginx([f"127.0.0.1:{api.port}" for api in two_apis])
    redis_port = int(resources.settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    try:
        job = await insert_job(resources, await owner_of(resources, key))
        path = f"/api/v1/jobs/{job.id}/events"
        async with httpx.AsyncClient(base_url=proxy.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
            async with events(http, path) as stream:
                assert (await stream.next()).event == "snapshot"
                serving = await _serving(resources.redis, two_apis, redis_port)
                serving.process.send_signal(signal.SIGTERM)
                rest = await stream.rest(timeout=10)
            assert [e.event for e in rest] == ["reconnect"]
            last = rest[0].id
            async with events(http, path, **{"Last-Event-ID": last}) as resumed:
                assert (await resumed.next()).event == "snapshot"
                other = await _serving(resources.redis, two_apis, redis_port)
                assert other is not serving
                await publish_job(resources, job, "completed", "completed", rows_ok=5)
                assert [e.event for e in await resumed.rest(timeout=5)] == ["completed"]
        assert await asyncio.to_thread(serving.process.wait, GRACE) in (0, -signal.SIGTERM)
    finally:
        proxy.stop()


async def test_sigterm_closes_an_event_websocket_with_1012(
    two_apis: list[ApiServer], key: str, resources: Resources
) -> None:
    api = two_apis[0]
    job = await insert_job(resources, await owner_of(resources, key))
    url = f"ws://127.0.0.1:{api.port}/api/v1/jobs/{job.id}/events/ws"
    async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as socket:
        async with asyncio.timeout(10):
            assert json.loads(await socket.recv())["event"] == "snapshot"
            api.process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert await asyncio.to_thread(api.process.wait, GRACE) in (0, -signal.SIGTERM)
