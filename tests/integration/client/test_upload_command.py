"""``sluice upload`` run as a child process against a real API."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
import msgspec
from sqlalchemy import func, select

from app.client.resume import Resumable
from app.resources import Resources
from db.models import UploadChunk
from tests.integration.client.conftest import Cli
from tests.integration.uploads.support import CHUNK, MiB, csv_bytes, read_object
from tests.support.servers import ApiServer, FaultProxy


async def _files(client: httpx.AsyncClient) -> dict[str, dict[str, object]]:
    items = (await client.get("/api/v1/files", params={"limit": 100})).json()["items"]
    return {item["filename"]: item for item in items if item["status"] == "stored"}


async def _started(
    cli: Cli, resources: Resources, url: str, args: tuple[str, ...], *, chunks: int
) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``sluice upload`` and wait until its session has ``chunks`` chunks on the server."""
    process = await cli.start(url, *args)
    async with asyncio.timeout(60):
        while not cli.state_files():
            await asyncio.sleep(0.05)
        upload_id = msgspec.json.decode(cli.state_files()[0].read_bytes(), type=Resumable).upload_id
        while await _chunks(resources, upload_id) < chunks:
            await asyncio.sleep(0.05)
    return process, upload_id


async def _chunks(resources: Resources, upload_id: str) -> int:
    async with resources.sessionmaker() as db:
        count = await db.scalar(select(func.count()).where(UploadChunk.session_id == uuid.UUID(upload_id)))
    return count or 0


async def _settled_chunks(resources: Resources, upload_id: str) -> int:
    """The chunk count once it stops changing: a chunk whose body had fully arrived before the
    client died may still be recorded after it."""
    previous = -1
    async with asyncio.timeout(20):
        while (count := await _chunks(resources, upload_id)) != previous:
            previous = count
            await asyncio.sleep(1.0)
    return count


async def test_small_and_chunked_files_and_a_bad_one(
    cli: Cli, api: ApiServer, client: httpx.AsyncClient, resources: Resources, tmp_path: Path
) -> None:
    small, big, bad = tmp_path / "small.csv", tmp_path / "big.csv", tmp_path / "photo.bin"
    small.write_bytes(csv_bytes(5000, seed=21))
    big.write_bytes(csv_bytes(3 * CHUNK + 999, seed=22))
    bad.write_bytes(bytes(range(256)) * 100)

    code, out = await cli.run(
        api.url, str(small), str(big), str(bad),
        "--threshold", "8MiB", "--chunk-size", "5MiB", "--parallel", "3", "--no-process", "--verify",
    )
    assert code == 1, out
    assert "sent 4 chunks, skipped 0" in out
    assert "photo.bin" in out and "failed" in out and "CSV" in out, out
    stored = await _files(client)
    assert set(stored) == {"small.csv", "big.csv"}
    for path in (small, big):
        assert read_object(resources, str(stored[path.name]["storage_key"])) == path.read_bytes()
    assert stored["big.csv"]["sha256"] is not None
    assert cli.state_files() == []

    code, out = await cli.run(api.url, str(small), "--no-process")
    assert code == 0, out
    assert "stored" in out


async def test_killed_upload_resumes_sending_only_missing_chunks(
    cli: Cli, api: ApiServer, slow_api: FaultProxy, client: httpx.AsyncClient, resources: Resources, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes(8 * CHUNK, seed=23))
    args = (str(path), "--threshold", "1MiB", "--chunk-size", "5MiB", "--parallel", "2", "--no-process")

    process, upload_id = await _started(cli, resources, slow_api.url, args, chunks=2)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    received = await _settled_chunks(resources, upload_id)
    assert 2 <= received < 8

    code, out = await cli.run(slow_api.url, *args)
    assert code == 0, out
    assert f"resuming upload {upload_id}: skipped {received} of 8 chunks" in out
    assert f"sent {8 - received} chunks, skipped {received}" in out
    state = (await client.get(f"/api/v1/uploads/{upload_id}")).json()
    assert state["state"] == "completed"
    record = (await client.get(f"/api/v1/files/{state['file_id']}")).json()
    assert read_object(resources, record["storage_key"]) == path.read_bytes()
    assert cli.state_files() == []


async def test_ctrl_c_stops_cleanly_and_the_next_run_finishes(
    cli: Cli, slow_api: FaultProxy, client: httpx.AsyncClient, resources: Resources, tmp_path: Path
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(csv_bytes(4 * CHUNK, seed=24))
    args = (str(path), "--threshold", "1MiB", "--chunk-size", "5MiB", "--parallel", "1", "--no-process")

    process, upload_id = await _started(cli, resources, slow_api.url, args, chunks=1)
    process.send_signal(signal.SIGINT)
    out = (await asyncio.wait_for(process.communicate(), 30))[0].decode()
    assert process.returncode == 130, out
    assert "run the same command again to resume" in out

    code, out = await cli.run(slow_api.url, *args)
    assert code == 0, out
    assert f"resuming upload {upload_id}" in out
    state = (await client.get(f"/api/v1/uploads/{upload_id}")).json()
    record = (await client.get(f"/api/v1/files/{state['file_id']}")).json()
    assert read_object(resources, record["storage_key"]) == path.read_bytes()


async def test_unreachable_server_is_retried_then_reported(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n1,2\n")
    code, out = await cli.run("http://127.0.0.1:9", str(path))
    assert code == 1
    assert "could not be reached after 3 retries" in out


async def test_missing_key_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"a,b\n")
    cli.key = ""
    code, out = await cli.run("http://127.0.0.1:9", str(path))
    assert code == 2 and "SLUICE_KEY" in out


def test_sizes_parse_in_binary_units() -> None:
    from app.client.command import parse_size

    assert parse_size("5MiB") == 5 * MiB == parse_size("5m") == parse_size(str(5 * MiB))
    assert parse_size("1G") == 1024 * MiB
