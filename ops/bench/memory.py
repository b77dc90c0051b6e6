"""Upload memory under load and behind a stalled client, through a real ``sluice serve``.

Run: .venv/bin/python ops/bench/memory.py [--uploads 50] [--sessions 50] [--size-mb 20] [--chunk-mib 8] [--after 30]
Prints the API's RSS at rest; its peak RSS while --uploads single-shot uploads and --sessions
chunked sessions (two chunks in flight each) of --size-mb MB run at once, spread over ten owners
(target < 250 MB); its RSS --after seconds later (target: back near the first figure); and how
long another owner's 1 MiB chunk takes while one client holds a 64 MiB chunk request open after
4 bytes (target < 1 s), alone and in the middle of the load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
import psutil
from common import ApiServer, MiB, ProcessSampler, bench_settings, new_key

MB = 1000 * 1000
STALLED_CHUNK = 64 * MiB


def csv_body(size: int) -> bytes:
    rows = b"".join(b"%d,%08x,row %d of the memory benchmark\n" % (n, n * 2654435761 % 2**32, n) for n in range(size // 30))
    return (b"id,value,note\n" + rows)[:size]


def client(url: str, key: str, connections: int = 10) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=600,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
    )


async def single_shot(http: httpx.AsyncClient, n: int, body: bytes) -> bool:
    response = await http.put(f"/api/v1/files/load-{n}.csv?process=false", content=body)
    return response.status_code == 201


async def chunked(http: httpx.AsyncClient, n: int, body: bytes, chunk: int) -> bool:
    created = await http.post(
        "/api/v1/uploads",
        json={"filename": f"session-{n}.csv", "size": len(body), "chunk_size": chunk, "process": False},
    )
    if created.status_code != 201:
        return False
    upload_id = created.json()["id"]
    indexes = list(range(created.json()["total_chunks"]))
    lanes = [indexes[0::2], indexes[1::2]]

    async def lane(mine: list[int]) -> bool:
        ok = True
        for i in mine:
            sent = await http.put(f"/api/v1/uploads/{upload_id}/chunks/{i}", content=body[i * chunk : (i + 1) * chunk])
            ok &= sent.status_code == 200
        return ok

    if not all(await asyncio.gather(*(lane(m) for m in lanes))):
        return False
    done = await http.post(f"/api/v1/uploads/{upload_id}/complete")
    return done.status_code == 200


async def stall(url: str, key: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that opens a session, announces a 64 MiB chunk, sends 4 bytes and goes quiet."""
    async with client(url, key) as http:
        created = await http.post(
            "/api/v1/uploads", json={"filename": "stalled.csv", "size": 2 * STALLED_CHUNK, "chunk_size": STALLED_CHUNK}
        )
        created.raise_for_status()
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/api/v1/uploads/{created.json()['id']}/chunks/0"
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {STALLED_CHUNK}\r\n\r\nid,n".encode()
    )
    await writer.drain()
    return reader, writer


async def small_chunk(url: str, key: str, body: bytes) -> float:
    """Seconds for one 1 MiB chunk (the whole file) to be stored, from its PUT to its answer."""
    async with client(url, key, 2) as http:
        created = await http.post("/api/v1/uploads", json={"filename": "small.csv", "size": len(body), "process": False})
        created.raise_for_status()
        started = time.perf_counter()
        sent = await http.put(f"/api/v1/uploads/{created.json()['id']}/chunks/0", content=body)
        elapsed = time.perf_counter() - started
        sent.raise_for_status()
    return elapsed


async def run(url: str, keys: list[str], stall_key: str, small_key: str, args: argparse.Namespace) -> dict[str, object]:
    body = csv_body(args.size_mb * MB)
    small = csv_body(MiB)
    chunk = args.chunk_mib * MiB
    reader, stalled = await stall(url, stall_key)
    stalled_at = time.perf_counter()
    try:
        await asyncio.sleep(1)
        alone = [await small_chunk(url, small_key, small) for _ in range(5)]
        clients = [client(url, k, (args.uploads + args.sessions * 2) // len(keys) + 2) for k in keys]
        started = time.perf_counter()
        jobs = [single_shot(clients[n % len(clients)], n, body) for n in range(args.uploads)]
        jobs += [chunked(clients[n % len(clients)], n, body, chunk) for n in range(args.sessions)]
        load = asyncio.gather(*jobs)
        await asyncio.sleep(3)
        loaded = [await small_chunk(url, small_key, small) for _ in range(3)]
        results = await load
        elapsed = time.perf_counter() - started
        for http in clients:
            await http.aclose()
        try:
            answer = await asyncio.wait_for(reader.read(64), 0.5)
        except TimeoutError:
            answer = b""
        status_line = answer.split(b"\r\n")[0].decode()
        stalled_for = time.perf_counter() - stalled_at
        stall_end = f"had answered {status_line!r} (read {stalled_for:.0f} s after it stalled)" if answer else "still open"
    finally:
        stalled.close()
    return {
        "alone": alone, "loaded": loaded, "errors": results.count(False), "elapsed": elapsed,
        "bytes": len(body) * (args.uploads + args.sessions), "stall_end": stall_end,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--size-mb", type=int, default=20)
    parser.add_argument("--chunk-mib", type=int, default=8)
    parser.add_argument("--after", type=float, default=30.0, help="seconds after the load to read RSS again")
    args = parser.parse_args()

    with bench_settings() as settings:
        keys = [new_key(settings) for _ in range(10)]
        stall_key, small_key = new_key(settings), new_key(settings)
        server = ApiServer(settings)
        try:
            api = psutil.Process(server.process.pid)
            # Warm the process up (imports, pools) so the idle figure is the one it returns to.
            asyncio.run(small_chunk(server.url, small_key, csv_body(MiB)))
            idle = api.memory_info().rss
            with ProcessSampler(server.process.pid, interval=0.02) as sampler:
                figures = asyncio.run(run(server.url, keys, stall_key, small_key, args))
            time.sleep(args.after)
            after = api.memory_info().rss
        finally:
            server.stop()

    total = figures["bytes"]
    print(f"S3 endpoint {settings.s3_endpoint}; SLUICE_UPLOAD_MEMORY {settings.upload_memory / MiB:.0f} MiB, "
          f"part size {settings.part_size / MiB:.0f} MiB")
    print(f"API RSS at rest:                                   {idle / MiB:8.1f} MiB")
    print(f"{args.uploads} single-shot + {args.sessions} chunked uploads of {args.size_mb} MB at once "
          f"({total / MiB:.0f} MiB in {figures['elapsed']:.1f} s, {total / MiB / figures['elapsed']:.1f} MiB/s, "
          f"{figures['errors']} errors)")
    print(f"API peak RSS during the load:                      {sampler.peak_rss / MiB:8.1f} MiB   (target < 250 MB = 238 MiB)")
    print(f"API RSS {args.after:.0f} s after the load:                    {after / MiB:8.1f} MiB   (target: near rest)")
    alone, loaded = figures["alone"], figures["loaded"]
    print("1 MiB chunk of another owner while a 64 MiB chunk request is stalled open after 4 bytes:")
    print(f"  without other load: median {statistics.median(alone):.3f} s, max {max(alone):.3f} s   (target < 1 s)")
    print(f"  during the load:    median {statistics.median(loaded):.3f} s, max {max(loaded):.3f} s")
    print(f"the stalled request at the end of the load: {figures['stall_end']}")


if __name__ == "__main__":
    main()
