"""One upload memory budget per API process: taken as bytes arrive, fair between owners, never
deadlocked; a stalled chunk request holds what it sent, not what it announced."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from app.budget import GRAIN, UploadMemory
from app.resources import Resources
from tests.integration.uploads.support import MiB, csv_bytes, sha256
from tests.support.servers import ApiServer

BIG_CHUNK = 16 * MiB


async def test_claims_grown_piece_by_piece_stay_within_the_limit_and_all_finish() -> None:
    memory = UploadMemory(8 * MiB)
    peak = 0
    rng = random.Random(7)

    async def upload(owner: int, size: int) -> None:
        nonlocal peak
        claim = memory.claim(owner, size)
        try:
            for end in range(256 * 1024, size + 1, 256 * 1024):
                await claim.cover(end)
                peak = max(peak, memory.used)
                await asyncio.sleep(0)
        finally:
            claim.release()

    sizes = [rng.randrange(1, 33) * 256 * 1024 for _ in range(40)]
    async with asyncio.timeout(20):
        await asyncio.gather(*(upload(n % 3, size) for n, size in enumerate(sizes)))
    assert 0 < peak <= 8 * MiB
    assert memory.used == 0


async def test_two_half_filled_chunks_do_not_wait_for_each_other_forever() -> None:
    # Taken a slice at a time, both would hold 2 MiB and each wait for the other's last MiB.
    memory = UploadMemory(4 * MiB)
    done: list[str] = []

    async def chunk(owner: str) -> None:
        claim = memory.claim(owner, 3 * MiB)
        try:
            for end in (MiB, 2 * MiB, 3 * MiB):
                await claim.cover(end)
                await asyncio.sleep(0.01)
            done.append(owner)
        finally:
            claim.release()

    async with asyncio.timeout(5):
        await asyncio.gather(chunk("a"), chunk("b"))
    assert sorted(done) == ["a", "b"]


async def test_freed_memory_goes_to_the_owner_that_holds_least() -> None:
    memory = UploadMemory(2 * GRAIN)
    held = [memory.claim("greedy", GRAIN), memory.claim("greedy", GRAIN)]
    for claim in held:
        await claim.cover(GRAIN)
    order: list[str] = []

    async def wait(owner: str) -> None:
        claim = memory.claim(owner, GRAIN)
        await claim.cover(GRAIN)
        order.append(owner)

    # The greedy owner queued first, three times; the other owner queued last.
    tasks = [asyncio.create_task(wait("greedy")) for _ in range(3)]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(wait("modest")))
    await asyncio.sleep(0)
    held[0].release()
    await asyncio.sleep(0.01)
    assert order == ["modest"]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_cancelled_waiter_holds_nothing() -> None:
    memory = UploadMemory(GRAIN)
    first = memory.claim("a", GRAIN)
    await first.cover(GRAIN)
    waiter = asyncio.create_task(memory.claim("b", GRAIN).cover(GRAIN))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    first.release()
    assert memory.used == 0
    async with asyncio.timeout(1):
        await memory.claim("c", GRAIN).cover(GRAIN)


@pytest.fixture(scope="module")
def tight_api(resources: Resources) -> Iterator[ApiServer]:
    """An API whose whole upload memory is one big chunk, and whose clients may stall for a minute."""
    server = ApiServer(resources.settings.replace(upload_memory=BIG_CHUNK, max_chunk_size=BIG_CHUNK))
    yield server
    server.stop()


async def stall(url: str, path: str, key: str, length: int, sent: bytes) -> asyncio.StreamWriter:
    """A request that announces ``length`` body bytes, sends ``sent`` and then nothing more."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    head = f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\nContent-Length: {length}\r\n\r\n"
    writer.write(head.encode() + sent)
    await writer.drain()
    return writer


async def test_a_stalled_big_chunk_does_not_hold_up_another_owners_chunk(
    tight_api: ApiServer, key: str, other_key: str
) -> None:
    async with (
        httpx.AsyncClient(base_url=tight_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as alice,
        httpx.AsyncClient(base_url=tight_api.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=60) as bob,
    ):
        big = await alice.post(
            "/api/v1/uploads", json={"filename": "big.csv", "size": 2 * BIG_CHUNK, "chunk_size": BIG_CHUNK}
        )
        assert big.status_code == 201, big.text
        stalled = await stall(
            tight_api.url, f"/api/v1/uploads/{big.json()['id']}/chunks/0", key, BIG_CHUNK, b"id,n"
        )
        try:
            await asyncio.sleep(0.5)
            small = csv_bytes(MiB)
            session = await bob.post(
                "/api/v1/uploads", json={"filename": "small.csv", "size": len(small), "process": False}
            )
            assert session.status_code == 201, session.text
            started = time.perf_counter()
            async with asyncio.timeout(15):
                sent = await bob.put(f"/api/v1/uploads/{session.json()['id']}/chunks/0", content=small)
            elapsed = time.perf_counter() - started
            assert sent.status_code == 200, sent.text
            assert sent.json()["sha256"] == sha256(small)
            assert elapsed < 5, f"the small chunk took {elapsed:.1f} s behind a stalled one"
            done = await bob.post(f"/api/v1/uploads/{session.json()['id']}/complete")
            assert done.status_code == 200, done.text
            assert not stalled.is_closing()
        finally:
            stalled.close()


async def test_big_chunks_of_many_sessions_share_the_memory_and_all_arrive(tight_api: ApiServer, key: str) -> None:
    data = csv_bytes(2 * BIG_CHUNK, seed=uuid.uuid4().int % 1000)
    async with httpx.AsyncClient(base_url=tight_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        sessions = []
        for _ in range(3):
            created = await http.post(
                "/api/v1/uploads",
                json={
                    "filename": "b.csv",
                    "size": len(data),
                    "chunk_size": BIG_CHUNK,
                    "sha256": sha256(data),
                    "process": False,
                },
            )
            assert created.status_code == 201, created.text
            sessions.append(created.json()["id"])
        # Six chunks, each as big as the whole budget, at once: they take turns, none deadlocks.
        async with asyncio.timeout(90):
            sent = await asyncio.gather(
                *(
                    http.put(f"/api/v1/uploads/{s}/chunks/{i}", content=data[i * BIG_CHUNK : (i + 1) * BIG_CHUNK])
                    for s in sessions
                    for i in (0, 1)
                )
            )
        assert [r.status_code for r in sent] == [200] * 6, [r.text for r in sent if r.status_code != 200]
        for s in sessions:
            done = await http.post(f"/api/v1/uploads/{s}/complete")
            assert done.status_code == 200, done.text
            assert done.json()["sha256"] == sha256(data)
