"""Real tus clients against the real stack (tuspy; tus-js-client from npm under Node): an upload is
cut off mid-way by a proxy and resumes from HEAD; parallel uploads are joined."""

from __future__ import annotations

import asyncio
import io
import json
import os
from datetime import datetime
from pathlib import Path

import httpx
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed

from app.resources import Resources
from db.models import UploadSession
from tests.integration.jobs.conftest import Stack, stack, wait_job  # noqa: F401 - the fixture, for the worker
from tests.integration.tus.conftest import MiB, csv_bytes, stored
from tests.support.servers import REPO, FaultProxy

__all__ = ["stack"]
TUS_JS_SCRIPT = Path(REPO) / "tests" / "support" / "tusjs" / "upload.mjs"


async def _touched(resources: Resources, upload_id: str) -> datetime:
    async with resources.sessionmaker() as session:
        return (await session.get_one(UploadSession, upload_id)).updated_at


async def _settled(resources: Resources, upload_id: str, since: datetime | None = None) -> None:
    """Wait until the server has taken the cut PATCH and let go of the upload again: under load it
    may still be starting that request when the client already saw the connection drop. The cut
    PATCH touched the row after ``since``, or (without ``since``) stored bytes."""
    for _ in range(300):
        async with resources.sessionmaker() as session:
            upload = await session.get_one(UploadSession, upload_id)
        moved = upload.updated_at > since if since is not None else upload.offset > 0
        if upload.lock_token is None and moved:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the cut PATCH still holds the upload")


async def _cut_then_resume(
    resources: Resources, api_url: str, key: str, data: bytes, *, checksum: bool
) -> tuple[str, int]:
    """Upload through a proxy that cuts the connection mid-way, then resume directly; returns the
    upload URL and the offset the server had when the client came back."""
    proxy = FaultProxy(api_url.removeprefix("http://"))
    await proxy.start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        cut_client = TusClient(f"http://{proxy.endpoint}/api/v1/tus/", headers=headers)
        uploader = cut_client.uploader(
            file_stream=io.BytesIO(data),
            chunk_size=3 * MiB,
            metadata={"filename": "resumed.csv"},
            upload_checksum=checksum,
        )
        await asyncio.to_thread(uploader.upload, 6 * MiB)
        before = await _touched(resources, uploader.url.rsplit("/", 1)[1])
        # Each PATCH has a connection of its own: the next one is cut 2 MiB into its 3 MiB.
        proxy.cut_after = 2 * MiB
        failed = False
        try:
            await asyncio.to_thread(uploader.upload)
        except (TusCommunicationError, TusUploadFailed, OSError):
            failed = True
        assert failed, "the proxy should have cut the upload"
        url = uploader.url.replace(proxy.endpoint, api_url.removeprefix("http://"))
    finally:
        await proxy.stop()
    await _settled(resources, url.rsplit("/", 1)[1], before)
    client = TusClient(f"{api_url}/api/v1/tus/", headers=headers)
    resumed = client.uploader(file_stream=io.BytesIO(data), url=url, chunk_size=4 * MiB, upload_checksum=checksum)
    offset = resumed.offset
    try:
        await asyncio.to_thread(resumed.upload)
    except TusUploadFailed as exc:
        raise AssertionError(f"resuming at {offset} failed: {exc.status_code} {exc.response_content!r}") from exc
    return url, offset


async def _file_of(client: httpx.AsyncClient, url: str) -> dict[str, object]:
    upload = (await client.get(f"/api/v1/uploads/{url.rsplit('/', 1)[1]}")).json()
    assert upload["state"] == "completed", upload
    return (await client.get(f"/api/v1/files/{upload['file_id']}")).json()  # type: ignore[no-any-return]


async def test_tuspy_cut_mid_way_resumes_from_head_and_the_table_is_built(
    stack: Stack, key: str, resources: Resources
) -> None:
    data = csv_bytes(13 * MiB)
    url, offset = await _cut_then_resume(resources, stack.api.url, key, data, checksum=False)
    # Bytes that arrived before the cut count (parts, and the tail kept in the store).
    assert 6 * MiB < offset < 9 * MiB
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:
        record = await _file_of(client, url)
        assert await stored(client, str(record["id"])) == data
        job = await wait_job(client, str(record["job_id"]), timeout=120)
        assert job["state"] == "completed", job
        assert job["rows_ok"] == data.count(b"\n") - 1


async def test_tuspy_with_checksums_cut_mid_way_resumes_with_identical_bytes(
    api: object, key: str, resources: Resources
) -> None:
    data = csv_bytes(11 * MiB)
    url, offset = await _cut_then_resume(resources, api.url, key, data, checksum=True)  # type: ignore[attr-defined]
    # A checksummed PATCH that was cut counts for nothing: the offset is a whole number of PATCHes.
    assert offset == 6 * MiB
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:  # type: ignore[attr-defined]
        record = await _file_of(client, url)
        assert await stored(client, str(record["id"])) == data


async def _node(modules: Path, *args: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        "node", str(TUS_JS_SCRIPT), *args,
        env={**os.environ, "TUS_JS_MODULES": str(modules)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_tus_js_client_one_patch_stream_cut_mid_way_resumes_from_head(
    api: object, key: str, resources: Resources, tus_js: Path, tmp_path: Path
) -> None:
    data = csv_bytes(13 * MiB)
    source = tmp_path / "data.csv"
    source.write_bytes(data)
    direct = api.url.removeprefix("http://")  # type: ignore[attr-defined]
    proxy = FaultProxy(direct)
    await proxy.start()
    proxy.cut_after = 7 * MiB
    try:
        cut = await _node(tus_js, f"http://{proxy.endpoint}/api/v1/tus/", key, str(source), "--no-retry")
    finally:
        await proxy.stop()
    assert cut["ok"] is False and cut["url"], cut
    url = str(cut["url"]).replace(proxy.endpoint, direct)
    await _settled(resources, url.rsplit("/", 1)[1])
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:  # type: ignore[attr-defined]
        offset = int((await client.head(url, headers={"Tus-Resumable": "1.0.0"})).headers["upload-offset"])
        assert 5 * MiB < offset < 7 * MiB
        done = await _node(tus_js, f"{api.url}/api/v1/tus/", key, str(source), "--resume", url)  # type: ignore[attr-defined]
        assert done["ok"] is True, done
        assert done["fileId"] and done["jobId"]
        assert await stored(client, str(done["fileId"])) == data


async def test_tus_js_client_parallel_uploads_are_joined_with_identical_bytes(
    api: object, key: str, tus_js: Path, tmp_path: Path
) -> None:
    data = csv_bytes(24 * MiB)
    source = tmp_path / "data.csv"
    source.write_bytes(data)
    done = await _node(tus_js, f"{api.url}/api/v1/tus/", key, str(source), "--parallel", "4")  # type: ignore[attr-defined]
    assert done["ok"] is True, done
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client:  # type: ignore[attr-defined]
        assert await stored(client, str(done["fileId"])) == data
