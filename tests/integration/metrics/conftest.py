"""A private stack for the metrics tests: an API whose log is kept, and workers with metrics ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.resources import Resources
from db.settings import Settings
from tests.integration.jobs.conftest import Worker, worker_settings
from tests.support.servers import ApiServer, free_port

TOKEN = "metrics-token-" + uuid.uuid4().hex


class LoggedApi(ApiServer):
    """``sluice serve`` with its log in a file, so tests can read what it said."""

    def __init__(self, settings: Settings, *, workers: int = 1, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, workers=workers, env=env, log=True)


@pytest.fixture
def metrics_settings(resources: Resources) -> Settings:
    """Settings of a stack of its own (Redis namespace included), logging at INFO, metrics behind a token."""
    base = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-m{uuid.uuid4().hex[:8]}")
    return base.replace(log_level="INFO", metrics_token=TOKEN, metrics_host="127.0.0.1")


@pytest.fixture
def start_api() -> Iterator[Callable[..., LoggedApi]]:
    started: list[LoggedApi] = []

    def start(settings: Settings, **options: Any) -> LoggedApi:
        started.append(LoggedApi(settings, **options))
        return started[-1]

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def start_worker() -> Iterator[Callable[..., tuple[Worker, int]]]:
    """A ``sluice worker`` with a metrics port of its own; returns it and the port."""
    started: list[Worker] = []

    def start(settings: Settings, **overrides: object) -> tuple[Worker, int]:
        port = free_port()
        started.append(Worker(settings.replace(worker_metrics_port=port, **overrides)))
        # The metrics server is a fork Dramatiq starts once its worker processes are up.
        deadline = time.monotonic() + 30
        while '"worker metrics served"' not in started[-1].output():
            assert time.monotonic() < deadline, started[-1].output()
            time.sleep(0.1)
        return started[-1], port

    yield start
    for worker in started:
        worker.stop()
