"""Rate limits per API key, counted in Redis: the budget holds across API processes, a refusal is
429 with Retry-After, and the upload byte routes have a budget of their own."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from app.resources import Resources
from tests.integration.keys.support import client_for, new_key
from tests.support.servers import REPO, ApiServer, settings_env

GENERAL, UPLOADS = 5, 8
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def limited(resources: Resources) -> Iterator[tuple[ApiServer, ApiServer]]:
    # A day's window: a test never straddles two windows (a minute's could, and would reset the count).
    settings = resources.settings.replace(rate_limit=f"{GENERAL}/day", upload_rate_limit=f"{UPLOADS}/day")
    one, two = ApiServer(settings), ApiServer(settings)
    yield one, two
    one.stop()
    two.stop()


async def test_one_keys_budget_holds_across_api_processes(
    limited: tuple[ApiServer, ApiServer], resources: Resources
) -> None:
    one, two = limited
    _, secret = await new_key(resources, "busy")
    _, other = await new_key(resources, "quiet")
    async with client_for(one.url, secret) as a, client_for(two.url, secret) as b:
        for i in range(GENERAL):
            answer = await (a if i % 2 else b).get("/api/v1/files")
            assert answer.status_code == 200, answer.text
            assert answer.headers["ratelimit-remaining"] == str(GENERAL - i - 1)
        for http in (a, b):
            refused = await http.get("/api/v1/me")
            assert refused.status_code == 429
            retry = int(refused.headers["retry-after"])
            assert 0 < retry <= 86400
            assert refused.json()["status_code"] == 429 and "retry after" in refused.json()["detail"]
        # Uploads draw on their own budget, so a throttled key can still send bytes.
        stored = await a.put("/api/v1/files/x.csv", params={"process": "false"}, content=b"a,b\n1,2\n")
        assert stored.status_code == 201, stored.text
        assert stored.headers["ratelimit-limit"] == str(UPLOADS)
    async with httpx.AsyncClient(base_url=one.url) as scraper:
        assert 'sluice_rate_limited_total{route_group="api"}' in (await scraper.get("/metrics")).text
    # Another key, the public routes: untouched.
    async with client_for(two.url, other) as c:
        assert (await c.get("/api/v1/files")).status_code == 200
    async with httpx.AsyncClient(base_url=one.url) as anonymous:
        for _ in range(GENERAL + 1):
            assert (await anonymous.get("/health")).status_code == 200


async def test_the_upload_budget_covers_single_shot_chunks_and_tus(
    limited: tuple[ApiServer, ApiServer], resources: Resources
) -> None:
    one, two = limited
    _, secret = await new_key(resources, "uploader")
    async with client_for(one.url, secret) as a, client_for(two.url, secret) as b:
        session = (await a.post("/api/v1/uploads", json={"filename": "c.csv", "size": 8})).json()  # general: 1
        tus = await b.post("/api/v1/tus/", headers=TUS | {"Upload-Length": "8"})  # upload: 1
        assert tus.status_code == 201, tus.text
        sent = [tus]
        sent.append(await a.put(f"/api/v1/uploads/{session['id']}/chunks/0", content=b"a,b\n1,2\n"))
        sent.append(await b.patch(httpx.URL(tus.headers["location"]).path, content=b"a,b\n3,4\n",
                                  headers=TUS | {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}))
        for i in range(UPLOADS - len(sent)):
            sent.append(await (a if i % 2 else b).put(f"/api/v1/files/f{i}.csv", params={"process": "false"}, content=b"a\n1\n"))
        assert [r.status_code for r in sent] == [201, 200, 204] + [201] * (UPLOADS - 3), [r.text for r in sent]
        refused = await a.put("/api/v1/files/late.csv", params={"process": "false"}, content=b"a\n1\n")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert (await b.patch(httpx.URL(tus.headers["location"]).path, content=b"x", headers=TUS | {"Upload-Offset": "8", "Content-Type": "application/offset+octet-stream"})).status_code == 429
        # The general budget is its own: reading still works.
        assert (await b.get(f"/api/v1/uploads/{session['id']}")).status_code == 200


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLUICE_RATE_LIMIT", "fast", "600/minute"),
        ("SLUICE_UPLOAD_RATE_LIMIT", "0/minute", "600/minute"),
        ("SLUICE_QUOTA_BYTES", "lots", "500GiB"),
        ("SLUICE_QUOTA_JOBS", "-1", "10000"),
    ],
)
def test_a_mistyped_limit_stops_every_command_at_start_up(resources: Resources, name: str, value: str, says: str) -> None:
    env = settings_env(resources.settings) | {name: value}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "list"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and name in done.stderr and says in done.stderr, done.stderr
