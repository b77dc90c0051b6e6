"""Per-owner quotas: refused before anything is stored (declared sizes at once, undeclared streams
when they pass the limit, leaving no object and no record stuck in ``receiving``), with a detail that
names the quota, its limit and the use; set by an admin over HTTP or the CLI; shown by /api/v1/me."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.resources import Resources
from db.models import File, FileStatus, UploadSession
from tests.integration.events.support import insert_job
from tests.integration.keys.support import client_for, new_key, sluice
from tests.support.servers import ApiServer

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def rows(size: int) -> bytes:
    line = b"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30\n"
    return (b"a,b\n" + line * (size // len(line) + 1))[:size]


@pytest.fixture
async def owner(api: ApiServer, resources: Resources) -> AsyncIterator[tuple[httpx.AsyncClient, uuid.UUID]]:
    """A fresh owner (so no other test's files count) and a client with its key."""
    key, secret = await new_key(resources, "quota-owner")
    async with client_for(api.url, secret) as http:
        yield http, key.owner_id


async def set_quota(admin: httpx.AsyncClient, owner_id: uuid.UUID, **limits: Any) -> dict[str, Any]:
    response = await admin.put(f"/api/v1/admin/owners/{owner_id}/quota", json=limits)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def files_of(resources: Resources, owner_id: uuid.UUID) -> list[File]:
    async with resources.sessionmaker() as session:
        return list(await session.scalars(select(File).where(File.owner_id == owner_id)))


def objects_of(resources: Resources, owner_id: uuid.UUID) -> list[str]:
    prefix = f"files/{owner_id}/"
    client = resources.store._client  # type: ignore[attr-defined]  # the store has no listing of its own
    names = [o.object_name for o in client.list_objects(resources.store.bucket, prefix=prefix, recursive=True)]
    return names + [u.key for u in resources.store.list_incomplete(prefix)]


def refusal(response: httpx.Response, status: int, quota: str, limit: int, used: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["quota"], body["limit"], body["used"]) == (quota, limit, used), body
    assert f"{quota} quota" in body["detail"] and str(limit) in body["detail"] and str(used) in body["detail"]


async def test_a_declared_size_past_the_bytes_quota_is_refused_before_any_byte_is_stored(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, bytes=1000)
    first = await http.put("/api/v1/files/a.csv", params={"process": "false"}, content=rows(600))
    assert first.status_code == 201, first.text
    refused = await http.put("/api/v1/files/b.csv", params={"process": "false"}, content=rows(401))
    refusal(refused, 413, "bytes", 1000, 600)
    assert "401" in refused.json()["detail"]
    assert [f.status for f in await files_of(resources, owner_id)] == [FileStatus.stored]
    async with httpx.AsyncClient(base_url=str(http.base_url)) as scraper:
        assert 'sluice_quota_refusals_total{quota="bytes"}' in (await scraper.get("/metrics")).text
    # Exactly up to the limit is allowed.
    assert (await http.put("/api/v1/files/c.csv", params={"process": "false"}, content=rows(400))).status_code == 201

    # Sessions declare their size: refused at creation, chunked and tus alike.
    chunked = await http.post("/api/v1/uploads", json={"filename": "big.csv", "size": 10})
    refusal(chunked, 413, "bytes", 1000, 1000)
    tus = await http.post("/api/v1/tus/", headers=TUS | {"Upload-Length": "10"})
    refusal(tus, 413, "bytes", 1000, 1000)
    assert tus.headers["tus-resumable"] == "1.0.0"
    async with resources.sessionmaker() as session:
        assert await session.scalar(select(UploadSession.id).where(UploadSession.owner_id == owner_id)) is None


@pytest.mark.parametrize("size", [200 * 1024, 12 * MiB], ids=["one-part", "multipart"])
async def test_an_undeclared_stream_is_stopped_when_it_passes_the_bytes_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources, size: int
) -> None:
    http, owner_id = owner
    limit = size - 1
    await set_quota(admin_client, owner_id, bytes=limit)
    data = rows(size + 4 * MiB)
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(data), 64 * 1024):
            sent += 64 * 1024
            yield data[start : start + 64 * 1024]

    try:
        refused = await http.put("/api/v1/files/stream.csv", params={"process": "false"}, content=body())
    except httpx.HTTPError:
        pytest.fail("the server should answer 413, not drop the connection")
    refusal(refused, 413, "bytes", limit, 0)
    # Nothing stored and nothing left open: no object, no multipart upload, no record in receiving.
    assert objects_of(resources, owner_id) == []
    records = await files_of(resources, owner_id)
    assert [r.status for r in records] in ([], [FileStatus.failed])
    assert all("bytes quota" in (r.error or "") for r in records)
    me = (await http.get("/api/v1/me")).json()
    assert me["quotas"]["bytes"] == {"limit": limit, "used": 0}
    # Within the quota the same kind of stream goes through.
    small = rows(limit)

    async def fits() -> AsyncIterator[bytes]:
        yield small

    stored = await http.put("/api/v1/files/fits.csv", params={"process": "false"}, content=fits())
    assert stored.status_code == 201, stored.text
    assert stored.json()["size"] == limit


async def test_a_batch_part_past_the_bytes_quota_fails_alone(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, bytes=100_000)
    files = [("file", ("small.csv", rows(50_000))), ("file", ("large.csv", rows(60_000)))]
    answer = await http.post("/api/v1/files", params={"process": "false"}, files=files)
    assert answer.status_code == 207, answer.text
    results = answer.json()["results"]
    assert [r["status_code"] for r in results] == [201, 413]
    assert "bytes quota" in results[1]["detail"]
    assert len(objects_of(resources, owner_id)) == 1


async def test_the_files_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, files=2)
    for name in ("a.csv", "b.csv"):
        assert (await http.put(f"/api/v1/files/{name}", params={"process": "false"}, content=rows(100))).status_code == 201
    refusal(await http.put("/api/v1/files/c.csv", params={"process": "false"}, content=rows(100)), 409, "files", 2, 2)
    refusal(await http.post("/api/v1/uploads", json={"filename": "d.csv", "size": 100}), 409, "files", 2, 2)
    # A deleted file frees its place.
    first = (await http.get("/api/v1/files")).json()["items"][0]["id"]
    assert (await http.delete(f"/api/v1/files/{first}")).status_code == 204
    assert (await http.put("/api/v1/files/c.csv", params={"process": "false"}, content=rows(100))).status_code == 201
    assert len(objects_of(resources, owner_id)) == 2


async def test_the_sessions_quota_counts_chunked_and_tus_sessions(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, sessions=2)
    chunked = await http.post("/api/v1/uploads", json={"filename": "a.csv", "size": 6 * MiB})
    assert chunked.status_code == 201, chunked.text
    tus = await http.post("/api/v1/tus/", headers=TUS | {"Upload-Defer-Length": "1"})
    assert tus.status_code == 201, tus.text
    refusal(await http.post("/api/v1/uploads", json={"filename": "b.csv", "size": 100}), 409, "sessions", 2, 2)
    refusal(await http.post("/api/v1/tus/", headers=TUS | {"Upload-Length": "100"}), 409, "sessions", 2, 2)
    # Ending one frees its place.
    assert (await http.delete(f"/api/v1/uploads/{chunked.json()['id']}")).status_code == 204
    assert (await http.post("/api/v1/tus/", headers=TUS | {"Upload-Length": "100"})).status_code == 201
    me = (await http.get("/api/v1/me")).json()
    assert me["quotas"]["sessions"] == {"limit": 2, "used": 2}


async def test_the_jobs_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, jobs=1)
    stored = (await http.put("/api/v1/files/a.csv", params={"process": "false"}, content=rows(100))).json()
    active = await insert_job(resources, owner_id)
    refused = await http.post("/api/v1/jobs", json={"file_ids": [stored["id"]]})
    refusal(refused, 409, "jobs", 1, 1)
    async with resources.sessionmaker() as session:
        assert await session.scalar(select(File.id).where(File.id == uuid.UUID(stored["id"]))) is not None
    me = (await http.get("/api/v1/me")).json()
    assert me["quotas"]["jobs"] == {"limit": 1, "used": 1}
    assert (await http.post(f"/api/v1/jobs/{active.id}/cancel")).status_code in (200, 202)
    assert (await http.post("/api/v1/jobs", json={"file_ids": [stored["id"]]})).status_code == 201


async def test_me_shows_the_key_and_use_against_each_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient
) -> None:
    http, owner_id = owner
    empty = (await http.get("/api/v1/me")).json()
    assert empty["owner_id"] == str(owner_id) and empty["admin"] is False and empty["name"] == "quota-owner"
    assert empty["prefix"].startswith("slk_") and empty["expires_at"] is None
    unlimited = {"limit": None, "used": 0}
    assert empty["quotas"] == {"bytes": unlimited, "files": unlimited, "sessions": unlimited, "jobs": unlimited}

    await set_quota(admin_client, owner_id, bytes=10 * MiB, files=10, sessions=3, jobs=4)
    await http.put("/api/v1/files/a.csv", params={"process": "false"}, content=rows(1234))
    await http.post("/api/v1/uploads", json={"filename": "b.csv", "size": 5000})
    quotas = (await http.get("/api/v1/me")).json()["quotas"]
    assert quotas == {
        "bytes": {"limit": 10 * MiB, "used": 1234 + 5000},
        "files": {"limit": 10, "used": 1},
        "sessions": {"limit": 3, "used": 1},
        "jobs": {"limit": 4, "used": 0},
    }
    async with httpx.AsyncClient(base_url=str(http.base_url), headers={"Authorization": "Bearer slk_wrong"}) as wrong:
        assert (await wrong.get("/api/v1/me")).status_code == 401


async def test_admins_set_quotas_over_http(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient
) -> None:
    http, owner_id = owner
    path = f"/api/v1/admin/owners/{owner_id}/quota"
    record = await set_quota(admin_client, owner_id, bytes=500, files=3)
    assert record["own"] == {"bytes": 500, "files": 3, "sessions": None, "jobs": None}
    # Fields left out keep theirs; null goes back to the default (unlimited here).
    record = await set_quota(admin_client, owner_id, files=None, jobs=2)
    assert record["own"] == {"bytes": 500, "files": None, "sessions": None, "jobs": 2}
    assert record["quotas"]["bytes"] == {"limit": 500, "used": 0}
    assert (await admin_client.get(path)).json() == record
    for body in ({"bytes": -1}, {"files": "many"}, {"disk": 5}):
        answer = await admin_client.put(path, json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert (await http.put(path, json={"bytes": None})).status_code == 403
    assert (await http.get(path)).status_code == 403
    assert (await admin_client.get("/api/v1/admin/owners/not-a-uuid/quota")).status_code in (404, 422)


async def test_the_cli_sets_and_shows_an_owners_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], resources: Resources
) -> None:
    http, owner_id = owner
    settings = resources.settings
    done = sluice(settings, "owners", "quota", str(owner_id), "--bytes", "1KiB", "--files", "10000", "--sessions", "20", "--jobs", "10")
    assert done.returncode == 0, done.stderr
    assert "bytes     limit 1024" in done.stdout and "(own)" in done.stdout
    me = (await http.get("/api/v1/me")).json()["quotas"]
    assert {q: me[q]["limit"] for q in me} == {"bytes": 1024, "files": 10000, "sessions": 20, "jobs": 10}
    refusal(await http.put("/api/v1/files/a.csv", params={"process": "false"}, content=rows(2000)), 413, "bytes", 1024, 0)

    reset = sluice(settings, "owners", "quota", str(owner_id), "--bytes", "default")
    assert reset.returncode == 0 and "unlimited" in reset.stdout
    assert (await http.get("/api/v1/me")).json()["quotas"]["bytes"]["limit"] is None
    bad = sluice(settings, "owners", "quota", str(owner_id), "--files", "lots")
    assert bad.returncode == 2 and "--files" in bad.stderr


async def test_a_tus_upload_of_deferred_length_is_stopped_at_the_bytes_quota(
    owner: tuple[httpx.AsyncClient, uuid.UUID], admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    http, owner_id = owner
    await set_quota(admin_client, owner_id, bytes=100_000)
    created = await http.post("/api/v1/tus/", headers=TUS | {"Upload-Defer-Length": "1", "Upload-Metadata": ""})
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["location"]).path
    body = {**TUS, "Content-Type": "application/offset+octet-stream"}
    refused = await http.patch(path, content=rows(300_000), headers=body | {"Upload-Offset": "0"})
    refusal(refused, 413, "bytes", 100_000, 0)
    # What arrived within the quota is kept (tus resumes from it); not a byte more.
    offset = int((await http.head(path, headers=TUS)).headers["upload-offset"])
    assert offset <= 100_000
    assert (await http.get("/api/v1/me")).json()["quotas"]["bytes"] == {"limit": 100_000, "used": offset}
    more = await http.patch(path, content=rows(200_000)[offset:], headers=body | {"Upload-Offset": str(offset)})
    refusal(more, 413, "bytes", 100_000, offset)
    assert (await http.delete(path, headers=TUS)).status_code == 204
    assert objects_of(resources, owner_id) == []
    assert (await http.get("/api/v1/me")).json()["quotas"]["bytes"]["used"] == 0
