"""A real clamd on the tests' own signature database, and an API and a worker that scan with it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.resources import Resources
from tests.integration.jobs.conftest import Stack, worker_settings
from tests.support.clamd import ClamdServer, clamd_binary
from tests.support.servers import ApiServer, free_port, wait_for


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    if clamd_binary() is None:
        pytest.skip("clamd is not installed (Debian: apt-get install clamav-daemon); the scanning tests need a real one")
    server = ClamdServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def scanner(clamd: ClamdServer) -> Iterator[ClamdServer]:
    """The module's clamd, running again after each test whatever the test did to it."""
    yield clamd
    if clamd.process is None:
        clamd.start()


@pytest.fixture(scope="module")
def scan_stack(resources: Resources, clamd: ClamdServer) -> Iterator[Stack]:
    """An API and a worker with ``SLUICE_SCANNER`` set, in a Redis namespace of their own."""
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-scan-{uuid.uuid4().hex[:6]}")
    settings = settings.replace(scanner=clamd.url, worker_metrics_port=free_port())
    stack = Stack(settings, ApiServer(settings), None)
    stack.start_worker()
    # The metrics server is a fork Dramatiq starts once its worker processes are up.
    wait_for(f"http://127.0.0.1:{settings.worker_metrics_port}/metrics")
    yield stack
    stack.stop()


@pytest.fixture
async def scan_client(scan_stack: Stack, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=scan_stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:
        yield http
