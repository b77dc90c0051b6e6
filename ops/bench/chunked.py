"""Chunked uploads: a 1 GiB file as a chunked session with 4 chunks in flight vs a direct minio
SDK upload of the same bytes to the same S3 endpoint, in one run; then many small sessions at once.

Run: .venv/bin/python ops/bench/chunked.py [--size-mib 1024] [--parallel 4] [--chunk-mib 8] [--sessions 50]
Prints MiB/s of both and the ratio (target >= 0.9), the API's peak RSS during the chunked upload,
and chunks/minute, errors and the API's peak RSS for --sessions concurrent sessions of two chunks
each (the API holds one chunk per request in flight, so that peak grows with the sessions).
The chunked client is the one ``sluice upload`` uses (per-chunk SHA-256, retries), in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
from common import ApiServer, MiB, ProcessSampler, bench_settings, direct_upload, new_key
from rich.console import Console
from rich.progress import Progress
from upload import make_csv

from app.client.resume import ResumeStore
from app.client.upload import Options, Uploader

SMALL_CHUNK = 5 * MiB


async def chunked_upload(url: str, key: str, path: Path, parallel: int, chunk: int, cache: Path) -> float:
    options = Options(chunk_size=chunk, parallel=parallel, process=False, threshold=0, verify=False)
    console = Console(quiet=True)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300,
        limits=httpx.Limits(max_connections=parallel + 2),
    ) as http:
        uploader = Uploader(http, options, ResumeStore(url, cache), Progress(disable=True), console)
        started = time.perf_counter()
        outcome = await uploader.upload(path)
        elapsed = time.perf_counter() - started
    if not outcome.stored:
        raise SystemExit(f"chunked upload failed: {outcome.detail}")
    return elapsed


async def small_sessions(url: str, key: str, sessions: int) -> tuple[int, int, float]:
    """``sessions`` sessions at once, each a 5 MiB chunk and a 64 KiB one, sent in parallel and completed."""
    rows = b"".join(b"%d,%08x\n" % (n, n * 2654435761 % 2**32) for n in range(SMALL_CHUNK // 8))
    first, last = (b"id,value\n" + rows)[:SMALL_CHUNK], rows[: 64 * 1024]
    errors = 0
    chunks = 0

    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300,
        limits=httpx.Limits(max_connections=sessions * 2),
    ) as http:

        async def one(n: int) -> None:
            nonlocal errors, chunks
            body = {"filename": f"small-{n}.csv", "size": SMALL_CHUNK + len(last), "chunk_size": SMALL_CHUNK,
                    "process": False}
            created = await http.post("/api/v1/uploads", json=body)
            if created.status_code != 201:
                errors += 1
                return
            upload_id = created.json()["id"]
            sent = await asyncio.gather(
                http.put(f"/api/v1/uploads/{upload_id}/chunks/0", content=first),
                http.put(f"/api/v1/uploads/{upload_id}/chunks/1", content=last),
            )
            ok = [r for r in sent if r.status_code == 200]
            chunks += len(ok)
            errors += len(sent) - len(ok)
            done = await http.post(f"/api/v1/uploads/{upload_id}/complete")
            errors += done.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(sessions)))
        elapsed = time.perf_counter() - started
    return chunks, errors, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--chunk-mib", type=int, default=8, help="chunk size, and the direct upload's part size")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp, bench_settings() as settings:
        path = Path(tmp) / "bench.csv"
        make_csv(str(path), args.size_mib * MiB)
        size = path.stat().st_size

        chunk = args.chunk_mib * MiB
        direct = direct_upload(settings, path, part_size=chunk)

        key = new_key(settings)
        server = ApiServer(settings)
        try:
            with ProcessSampler(server.process.pid) as sampler:
                through_api = asyncio.run(chunked_upload(server.url, key, path, args.parallel, chunk, Path(tmp) / "cache"))
            with ProcessSampler(server.process.pid) as small_sampler:
                chunks, errors, small_elapsed = asyncio.run(small_sessions(server.url, key, args.sessions))
        finally:
            server.stop()

    direct_mibs = size / MiB / direct
    api_mibs = size / MiB / through_api
    print(f"file: {size / MiB:.0f} MiB CSV, S3 endpoint {settings.s3_endpoint}, chunk/part size {args.chunk_mib} MiB")
    print(f"(a) direct minio SDK upload (fput_object):      {direct_mibs:8.1f} MiB/s  ({direct:.1f} s)")
    print(f"(b) chunked session, {args.parallel} chunks in flight:       {api_mibs:8.1f} MiB/s  ({through_api:.1f} s)")
    print(f"ratio b/a:                                      {api_mibs / direct_mibs:8.2f}   (target >= 0.9)")
    print(f"API peak RSS during (b):                        {sampler.peak_rss / MiB:8.1f} MiB")
    gib = size / 1024**3
    print(
        f"API CPU (user+sys) per GiB during (b):          {sampler.cpu_seconds / gib:8.2f} s "
        f"(user {sampler.user_seconds / gib:.2f}, sys {sampler.system_seconds / gib:.2f})"
    )
    print(
        f"{args.sessions} concurrent sessions x 2 chunks (5 MiB + 64 KiB), completed: "
        f"{chunks / small_elapsed * 60:.0f} chunks/minute, {errors} errors ({small_elapsed:.1f} s), "
        f"API peak RSS {small_sampler.peak_rss / MiB:.1f} MiB"
    )


if __name__ == "__main__":
    main()
