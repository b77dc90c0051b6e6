"""An API whose object store the tests switch off and on (see ``support.S3Switch``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.resources import Resources
from db.storage import MinioStore
from tests.integration.faults.support import STALL, S3Switch
from tests.support.servers import ApiServer


@pytest.fixture(scope="module")
def s3_switch(s3_endpoint: str) -> Iterator[S3Switch]:
    switch = S3Switch(s3_endpoint)
    switch.up()
    yield switch
    switch.down()


@pytest.fixture
def switch(s3_switch: S3Switch) -> Iterator[S3Switch]:
    """The switch, turned back on after each test whatever it left."""
    yield s3_switch
    if s3_switch.is_down:
        s3_switch.up()


@pytest.fixture(scope="module")
def outage_api(resources: Resources, s3_switch: S3Switch) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings.replace(s3_endpoint=s3_switch.endpoint, upload_stall_timeout=STALL))
    yield server
    server.stop()


@pytest.fixture
async def outage_client(outage_api: ApiServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=outage_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:
        yield http


@pytest.fixture(scope="module")
def store_behind_switch(resources: Resources, s3_switch: S3Switch) -> MinioStore:
    """What a worker's sweeper sees: the store through the switch."""
    return MinioStore.from_settings(resources.settings.replace(s3_endpoint=s3_switch.endpoint), timeout=5)
