"""Stacks of their own for the batch tests: one with a real worker, one whose jobs nobody takes."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from app.resources import Resources
from tests.integration.jobs.conftest import Stack, make_stack, worker_settings
from tests.support.servers import ApiServer

__all__ = ["make_stack"]


@pytest.fixture(scope="package")
def batch_stack(resources: Resources) -> Iterator[Stack]:
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-batches")
    shared = Stack(settings, ApiServer(settings), None)
    shared.start_worker()
    yield shared
    shared.stop()


@pytest.fixture
def idle_stack(make_stack: Callable[..., Stack]) -> Stack:
    """An API with no worker: its jobs stay pending until cancelled."""
    return make_stack(worker=False)


def client_of(stack: Stack, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
