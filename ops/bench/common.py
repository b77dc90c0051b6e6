"""Shared pieces of the benchmarks: an S3 endpoint, a fresh database, an API process, RSS/CPU sampling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from app.auth import create_api_key  # noqa: E402
from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.settings import Settings  # noqa: E402
from db.storage import MinioStore  # noqa: E402
from tests.support.servers import ApiServer, s3_server  # noqa: E402

MiB = 1024 * 1024
ADMIN_DSN = os.environ.get("SLUICE_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def s3_answers(endpoint: str) -> bool:
    try:
        httpx.get(f"http://{endpoint}/", timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


@contextlib.contextmanager
def bench_settings(**overrides: object) -> Iterator[Settings]:
    """Settings on a fresh database and bucket, on SLUICE_S3_ENDPOINT if it answers, else a local S3 server."""
    run = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    with contextlib.ExitStack() as stack:
        endpoint = base.s3_endpoint if s3_answers(base.s3_endpoint) else stack.enter_context(s3_server())
        name = f"sluice_bench_{run}"
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
        stack.callback(lambda: asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        url = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"
        settings = base.replace(
            database_url=url, s3_endpoint=endpoint, s3_bucket=f"sluice-bench-{run}",
            redis_prefix=f"sluice-bench-{run}", log_level="WARNING",
            secret_key=base.secret_key or secrets.token_hex(32), **overrides,
        )
        upgrade(url)
        MinioStore.from_settings(settings).ensure_bucket()
        yield settings


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def direct_upload(settings: Settings, path: str | os.PathLike[str], part_size: int | None = None) -> float:
    """Seconds a direct ``minio`` SDK upload of ``path`` takes (the baseline every upload bench compares to)."""
    store = MinioStore.from_settings(settings)
    started = time.perf_counter()
    store._client.fput_object(settings.s3_bucket, "direct/bench.csv", str(path), part_size=part_size or settings.part_size)
    seconds = time.perf_counter() - started
    store.delete("direct/bench.csv")
    return seconds


def new_key(settings: Settings) -> str:
    async def run() -> str:
        engine = make_engine(settings.database_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session:
                _, secret = await create_api_key(session, "bench")
                await session.commit()
                return secret
        finally:
            await engine.dispose()

    return asyncio.run(run())


TREE_EVERY = 20
"""Samples between two looks for the process tree's members."""


class ProcessSampler:
    """Samples a process tree's RSS (peak) and CPU time (user+sys) while a measurement runs."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu_start = (0.0, 0.0)
        self.user_seconds = 0.0
        self.system_seconds = 0.0
        """Kernel time apart: page faults, copies in and out of sockets (a regression hid there)."""

    def _tree(self) -> list[psutil.Process]:
        return [self.process, *self.process.children(recursive=True)]

    def _cpu(self) -> tuple[float, float]:
        user = system = 0.0
        for proc in self._tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                user += times.user
                system += times.system
        return user, system

    def _run(self) -> None:
        samples = 0
        while not self._stop.is_set():
            # Finding children scans all of /proc: done once a second, not on every sample, so
            # the sampler does not steal the CPU (and GIL) of an in-process client being measured.
            if samples % TREE_EVERY == 0:
                tree = self._tree()
            samples += 1
            rss = 0
            for proc in tree:
                with contextlib.suppress(psutil.Error):
                    rss += proc.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(self.interval)

    def __enter__(self) -> ProcessSampler:
        self._cpu_start = self._cpu()
        self._thread.start()
        return self

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    def __exit__(self, *_: object) -> None:
        user, system = self._cpu()
        self.user_seconds, self.system_seconds = user - self._cpu_start[0], system - self._cpu_start[1]
        self._stop.set()
        self._thread.join()


__all__ = ["MiB", "ApiServer", "ProcessSampler", "Settings", "bench_settings", "new_key"]
