"""Sluice behind nginx (ops/nginx/sluice.conf): big bodies stream through without the API's memory
growing or nginx spooling them, tus answers URLs of the proxy, forwarded headers count only from
the proxy, and event streams deliver each event at once."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid

import httpx
import msgspec

from app.resources import Resources
from tests.integration.events.support import events, insert_job, owner_of, publish_job
from tests.integration.proxy.conftest import PROXY_ADDRESS, CsvStream, MiB, RssSampler
from tests.support.nginx import Nginx
from tests.support.servers import ApiServer

RSS_BUDGET_MIB = 200
"""The API's resident memory while 256 MiB pass through it (its upload budget is 64 MiB)."""


def _client(base_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300)


async def _stored_sha256(http: httpx.AsyncClient, file_id: str) -> str:
    """The stored bytes' SHA-256, read back through the proxy a piece at a time."""
    digest = hashlib.sha256()
    async with http.stream("GET", f"/api/v1/files/{file_id}/content") as response:
        assert response.status_code == 200, (await response.aread()).decode()
        async for piece in response.aiter_bytes():
            digest.update(piece)
    return digest.hexdigest()


async def test_a_256_mib_upload_streams_through_nginx_with_the_api_memory_flat(
    proxy: Nginx, key: str, rss: RssSampler
) -> None:
    size = 256 * MiB
    body = CsvStream(size)
    async with _client(proxy.url, key) as http:
        response = await http.put(
            "/api/v1/files/through-nginx.csv",
            params={"process": "false"},
            content=body.body(),
            headers={"Content-Length": str(size)},
        )
        assert response.status_code == 201, response.text
        record = response.json()
        assert record["size"] == size
        assert record["sha256"] == body.digest.hexdigest()
        assert await _stored_sha256(http, record["id"]) == body.digest.hexdigest()
    assert rss.peak_mib < RSS_BUDGET_MIB, f"API peak RSS {rss.peak_mib:.0f} MiB (started at {rss.start_mib:.0f})"
    assert proxy.spooled() == [], "nginx spooled the body or the response to disk"


async def test_a_chunked_request_body_is_passed_on_too(proxy: Nginx, key: str) -> None:
    # No Content-Length: nginx must stream a chunked body on (HTTP/1.1 to the API), not refuse it with 411.
    body = CsvStream(12 * MiB)
    async with _client(proxy.url, key) as http:
        response = await http.put("/api/v1/files/chunked.csv", params={"process": "false"}, content=body.body())
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == body.digest.hexdigest()


async def test_a_tus_upload_through_nginx_gets_the_proxy_url_and_arrives_whole(
    proxy: Nginx, key: str, rss: RssSampler
) -> None:
    size = 96 * MiB
    body = b"".join(CsvStream(size).pieces())
    metadata = ",".join(
        f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in {"filename": "tus.csv", "process": "false"}.items()
    )
    async with _client(proxy.url, key) as http:
        created = await http.post(
            "/api/v1/tus/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": metadata}
        )
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.startswith(f"{proxy.url}/api/v1/tus/"), location
        offset = 0
        for piece in (body[: 40 * MiB], body[40 * MiB :]):
            patched = await http.patch(
                location,
                content=piece,
                headers={
                    "Tus-Resumable": "1.0.0",
                    "Content-Type": "application/offset+octet-stream",
                    "Upload-Offset": str(offset),
                },
            )
            assert patched.status_code == 204, patched.text
            offset = int(patched.headers["upload-offset"])
        assert offset == size
        file_id = patched.headers["sluice-file-id"]
        head = await http.head(location, headers={"Tus-Resumable": "1.0.0"})
        assert head.headers["upload-offset"] == str(size)
        assert await _stored_sha256(http, file_id) == hashlib.sha256(body).hexdigest()
    assert rss.peak_mib < RSS_BUDGET_MIB, f"API peak RSS {rss.peak_mib:.0f} MiB (started at {rss.start_mib:.0f})"


async def _tus_location(base_url: str, key: str, **kwargs: object) -> str:
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, **kwargs) as http:  # type: ignore[arg-type]
        created = await http.post(
            "/api/v1/tus/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100", "X-Forwarded-Proto": "https"},
        )
    assert created.status_code == 201, created.text
    return created.headers["location"]


async def test_forwarded_headers_count_only_from_the_proxy(proxy: Nginx, proxied_api: ApiServer, key: str) -> None:
    # A client cannot claim https through nginx: the proxy sets X-Forwarded-Proto itself.
    assert (await _tus_location(proxy.url, key)).startswith(f"http://127.0.0.1:{proxy.port}/")
    # Nor straight to the API from an address that is not the proxy's.
    assert (await _tus_location(proxied_api.url, key)).startswith(f"http://127.0.0.1:{proxied_api.port}/")
    # The proxy's own address is believed (an https proxy makes https URLs).
    transport = httpx.AsyncHTTPTransport(local_address=PROXY_ADDRESS)
    assert (await _tus_location(proxied_api.url, key, transport=transport)).startswith(
        f"https://127.0.0.1:{proxied_api.port}/"
    )


async def test_an_event_stream_through_nginx_delivers_each_event_within_a_second(
    proxy: Nginx, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    async with _client(proxy.url, key) as http, events(http, f"/api/v1/jobs/{job.id}/events") as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert (await stream.next()).event == "snapshot"
        delays = []
        for n in range(1, 6):
            published = time.monotonic()
            await publish_job(resources, job, "progress", "processing", rows_ok=n * 100)
            event = await stream.next(timeout=5)
            delays.append(time.monotonic() - published)
            assert event.event == "progress" and msgspec.json.decode(event.data)["rows_ok"] == n * 100
            await asyncio.sleep(0.2)
        await publish_job(resources, job, "completed", "completed", rows_ok=600)
        rest = await stream.rest(timeout=5)
    assert [e.event for e in rest] == ["completed"]
    assert max(delays) < 1.0, f"events took {', '.join(f'{d:.3f}' for d in delays)} s through nginx"


async def test_nginx_refuses_a_body_over_its_limit_in_the_api_error_shape(proxy: Nginx, key: str) -> None:
    # Announced only: nginx answers from the headers, before a byte of the body.
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(
        f"PUT /api/v1/files/{uuid.uuid4().hex}.csv HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {4 * 1024**3}\r\n\r\nid\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        length = int(next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length")))
        body = await reader.readexactly(length)
    writer.close()
    assert head.startswith("HTTP/1.1 413"), head
    assert "application/json" in head
    assert msgspec.json.decode(body)["status_code"] == 413
