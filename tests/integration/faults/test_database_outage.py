"""A database that cannot be reached answers 503 with Retry-After, not a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from app.resources import Resources
from tests.support.servers import ApiServer, free_port


@pytest.fixture
def unreachable_api(resources: Resources) -> Iterator[ApiServer]:
    url = resources.settings.database_url
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    server = ApiServer(resources.settings.replace(database_url=url.replace(host_port, f"127.0.0.1:{free_port()}", 1)))
    yield server
    server.stop()


async def test_a_database_that_does_not_answer_is_a_503_to_retry(unreachable_api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=unreachable_api.url, headers={"Authorization": "Bearer slk_anything"}) as http:
        response = await http.get("/api/v1/files")
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "30"
    assert "cannot be reached" in response.json()["detail"]

