from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from app.resources import Resources
from tests.support.servers import ApiServer, FaultProxy

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def small_api(resources: Resources) -> Iterator[ApiServer]:
    """An API that takes at most 12 MiB, in 5 MiB parts, so limits are cheap to reach."""
    server = ApiServer(resources.settings.replace(max_file_size=12 * MiB, part_size=5 * MiB))
    yield server
    server.stop()


@pytest.fixture
async def flaky_s3(resources: Resources) -> AsyncIterator[FaultProxy]:
    proxy = FaultProxy(resources.settings.s3_endpoint)
    await proxy.start()
    yield proxy
    await proxy.stop()
