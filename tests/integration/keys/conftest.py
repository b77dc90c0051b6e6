"""A second API process on the same database and Redis, to show a change holds on every process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.resources import Resources
from tests.support.servers import ApiServer


@pytest.fixture(scope="module")
def second_api(resources: Resources) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings)
    yield server
    server.stop()
