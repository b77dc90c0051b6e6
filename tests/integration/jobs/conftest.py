"""Fixtures for processing: real ``sluice worker`` processes beside real API servers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.resources import Resources
from db.settings import Settings
from tests.support.servers import REPO, ApiServer, settings_env

TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


class Worker:
    """``sluice worker`` in its own process group, its log in a file."""

    def __init__(self, settings: Settings, *, processes: int = 1, threads: int = 2) -> None:
        self.log = Path(tempfile.mkstemp(prefix="sluice-worker-", suffix=".log")[1])
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--processes", str(processes), "--threads", str(threads)],
                env=settings_env(settings),
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes = processes
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.output()}")
            if self.output().count("is ready for action") >= self.processes:
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole worker tree, as the OOM killer or a lost machine would."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.unlink(missing_ok=True)


@dataclass
class Stack:
    """An API and a worker sharing a Redis namespace of their own, so no other worker takes their jobs."""

    settings: Settings
    api: ApiServer
    worker: Worker | None

    def start_worker(self, **overrides: object) -> Worker:
        self.worker = Worker(self.settings.replace(**overrides))
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.api.stop()


def worker_settings(settings: Settings, prefix: str) -> Settings:
    return settings.replace(redis_prefix=prefix, worker_heartbeat_timeout=5, worker_metrics_port=0)


@pytest.fixture(scope="session")
def stack(resources: Resources) -> Iterator[Stack]:
    """The stack most processing tests share."""
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-jobs")
    api = ApiServer(settings)
    shared = Stack(settings, api, None)
    shared.start_worker()
    yield shared
    shared.stop()


@pytest.fixture
def make_stack(resources: Resources) -> Iterator[Callable[..., Stack]]:
    """A private stack (API and optionally a worker) for tests that break or kill things."""
    made: list[Stack] = []

    def make(*, worker: bool = True, **worker_overrides: object) -> Stack:
        settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-{uuid.uuid4().hex[:8]}")
        created = Stack(settings, ApiServer(settings), None)
        made.append(created)
        if worker:
            created.start_worker(**worker_overrides)
        return created

    yield make
    for created in made:
        created.stop()


@pytest.fixture
async def jobs_client(stack: Stack, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        yield http


@pytest.fixture
async def other_jobs_client(stack: Stack, other_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=stack.api.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=120
    ) as http:
        yield http


async def wait_job(
    client: httpx.AsyncClient, job_id: str, *, states: set[str] = TERMINAL, timeout: float = 60.0
) -> dict[str, object]:
    """Poll the job until it is in one of ``states``; returns its record."""
    deadline = time.monotonic() + timeout
    record: dict[str, object] = {}
    while time.monotonic() < deadline:
        response = await client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        record = response.json()
        if record["state"] in states:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} still {record.get('state')} after {timeout}s: {record}")
