"""Progress fan-out: publish → SSE client latency for 1 and for 500 watchers of one job.

Events are published with ``workers.progress.publish`` (as workers do) on a real job row; every
watcher is a plain HTTP/1.1 connection to a real ``sluice serve`` process, read with a minimal
SSE reader so the client adds as little as possible. The publish time of each event is recorded
under its ``seq`` (the SSE id) on the same clock the watchers read, so latency is the time from
calling publish to the event's last byte arriving at the watcher. Also prints the API's peak RSS
and the Redis connections it holds during the run.

Events go out every 0.25 s by default, the fastest a worker publishes one job's progress
(``workers.processing.PUBLISH_EVERY``): 500 watchers then get 2,000 deliveries a second.

Run: .venv/bin/python ops/bench/sse.py [--watchers 1,500] [--events 40] [--interval 0.25]
Targets: p95 < 100 ms at 500 watchers; Redis connections not growing with watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from urllib.parse import urlsplit

import psutil
from common import ApiServer, ProcessSampler, Settings, bench_settings

from app.auth import create_api_key
from db.engine import make_engine, make_sessionmaker
from db.models import File, FileKind, FileStatus, Job
from workers.contracts import JobEvent, job_channel
from workers.processing import PUBLISH_EVERY
from workers.progress import publish


async def make_job(settings: Settings) -> tuple[str, Job]:
    """An API key and a job row of its owner."""
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session:
            key, secret = await create_api_key(session, "bench-sse")
            file = File(
                id=uuid.uuid4(), owner_id=key.owner_id, original_filename="bench.csv", filename="bench.csv",
                kind=FileKind.csv, status=FileStatus.stored, bucket=settings.s3_bucket, storage_key="bench",
            )
            session.add(file)
            await session.flush()
            job = Job(owner_id=key.owner_id, batch_id=uuid.uuid4(), file_id=file.id, bytes_total=10**9)
            session.add(job)
            await session.commit()
            return secret, job
    finally:
        await engine.dispose()


class Watcher:
    """One SSE connection: records when each event id arrives."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.connected = asyncio.Event()

    async def run(self, host: str, port: int, path: str, key: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"watcher got {status!r}")
        while await reader.readline() not in (b"\r\n", b""):
            pass
        pending = b""
        try:
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)  # chunked transfer encoding
                if size == 0:
                    return
                pending += (await reader.readexactly(size + 2))[:-2]
                now = time.perf_counter()
                *events, pending = pending.split(b"\r\n\r\n")
                for event in events:
                    fields = dict(line.split(b": ", 1) for line in event.split(b"\r\n") if b": " in line)
                    if b"id" in fields:
                        self.arrivals[int(fields[b"id"])] = now
                    self.connected.set()
                    if fields.get(b"event") == b"completed":
                        return
        finally:
            writer.close()


class RedisConnections:
    """Samples how many Redis connections the API process holds (peak)."""

    def __init__(self, pid: int, port: int) -> None:
        self.process = psutil.Process(pid)
        self.port = port
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        return sum(
            1
            for c in self.process.net_connections(kind="tcp")
            if c.raddr and c.raddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.count())
            time.sleep(0.1)

    def __enter__(self) -> RedisConnections:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(api: ApiServer, settings: Settings, watchers: int, events: int, interval: float) -> None:
    from redis.asyncio import Redis

    key, job = await make_job(settings)
    url = urlsplit(api.url)
    redis = Redis.from_url(settings.redis_url)
    channel = job_channel(settings.redis_prefix, job.id)
    redis_port = urlsplit(settings.redis_url).port or 6379
    connections = RedisConnections(api.process.pid, redis_port)
    idle = connections.count()
    clients = [Watcher() for _ in range(watchers)]
    started = time.perf_counter()
    with ProcessSampler(api.process.pid) as memory, connections:
        tasks = [
            asyncio.create_task(c.run(url.hostname or "127.0.0.1", url.port or 80, f"/api/v1/jobs/{job.id}/events", key))
            for c in clients
        ]
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 120)
        connect_s = time.perf_counter() - started
        published: dict[int, float] = {}
        for i in range(events + 1):
            done = i == events
            event = JobEvent(
                type="completed" if done else "progress", job_id=str(job.id), batch_id=str(job.batch_id),
                file_id=str(job.file_id), state="completed" if done else "processing", rows_ok=i * 1000,
                bytes_read=i * 10**7, bytes_total=10**9, progress=float(i),
            )
            before = time.perf_counter()
            sent = await publish(redis, channel, event)
            published[sent.seq] = before
            await asyncio.sleep(interval)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    await redis.aclose()

    latencies = sorted(
        (c.arrivals[seq] - at) * 1000 for c in clients for seq, at in published.items() if seq in c.arrivals
    )
    missing = len(published) * watchers - len(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"{watchers:>4} watchers: {len(latencies)} deliveries ({missing} missing), connect all {connect_s:.2f} s; "
        f"latency ms p50 {statistics.median(latencies):.1f}  p95 {p95:.1f}  max {latencies[-1]:.1f}; "
        f"API peak RSS {memory.peak_rss / 2**20:.0f} MiB; API Redis connections idle {idle}, peak {connections.peak}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", default="1,500", help="comma-separated watcher counts (1,500)")
    parser.add_argument("--events", type=int, default=40, help="progress events per run (40)")
    parser.add_argument(
        "--interval", type=float, default=PUBLISH_EVERY, help=f"seconds between events ({PUBLISH_EVERY})"
    )
    args = parser.parse_args()
    with bench_settings() as settings:
        api = ApiServer(settings)
        try:
            for watchers in (int(w) for w in args.watchers.split(",")):
                asyncio.run(measure(api, settings, watchers, args.events, args.interval))
        finally:
            api.stop()


if __name__ == "__main__":
    main()
