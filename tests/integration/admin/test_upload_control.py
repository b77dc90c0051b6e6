"""Admin control of uploads: cancel any owner's receiving session, storage figures per owner; 403 for other keys."""

from __future__ import annotations

import uuid

import httpx

from app.resources import Resources
from tests.integration.events.support import owner_of
from tests.integration.uploads.support import CHUNK, csv_bytes, incomplete_keys, send, session_key, start


async def test_an_admin_cancels_any_owners_session_and_its_storage_is_released(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient, resources: Resources
) -> None:
    data = csv_bytes(2 * CHUNK, seed=51)
    upload = await start(client, data)
    assert (await send(client, upload["id"], data, 0)).status_code == 200
    key = await session_key(resources, upload["id"])
    assert incomplete_keys(resources, key) == [key]

    response = await admin_client.post(f"/api/v1/admin/uploads/{upload['id']}/cancel")

    assert response.status_code == 200, response.text
    assert (response.json()["id"], response.json()["state"]) == (upload["id"], "aborted")
    assert incomplete_keys(resources, key) == []
    mine = (await client.get(f"/api/v1/uploads/{upload['id']}")).json()
    assert mine["state"] == "aborted" and mine["error"] == "cancelled by an administrator"
    refused = await send(client, upload["id"], data, 1)
    assert refused.status_code == 409 and "aborted" in refused.json()["detail"]
    listed = (await admin_client.get("/api/v1/admin/uploads", params={"limit": 1000})).json()["items"]
    assert upload["id"] not in {s["id"] for s in listed}

    again = await admin_client.post(f"/api/v1/admin/uploads/{upload['id']}/cancel")
    assert again.status_code == 409 and "already aborted" in again.json()["detail"]
    assert (await admin_client.post(f"/api/v1/admin/uploads/{uuid.uuid4()}/cancel")).status_code == 404


async def test_a_completed_upload_cannot_be_cancelled(client: httpx.AsyncClient, admin_client: httpx.AsyncClient) -> None:
    data = csv_bytes(1000, seed=52)
    upload = await start(client, data, process=False)
    assert (await send(client, upload["id"], data, 0)).status_code == 200
    assert (await client.post(f"/api/v1/uploads/{upload['id']}/complete")).status_code in (200, 201)

    response = await admin_client.post(f"/api/v1/admin/uploads/{upload['id']}/cancel")

    assert response.status_code == 409, response.text
    assert "completed" in response.json()["detail"]


async def test_storage_per_owner(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, admin_client: httpx.AsyncClient, key: str, other_key: str, resources: Resources
) -> None:
    small, big = b"a,b\n1,2\n", csv_bytes(3000, seed=53)
    for body, name in ((small, "s.csv"), (big, "b.csv")):
        assert (await client.put(f"/api/v1/files/{name}", params={"process": "false"}, content=body)).status_code == 201
    data = csv_bytes(2 * CHUNK, seed=54)
    upload = await start(other_client, data)
    assert (await send(other_client, upload["id"], data, 0)).status_code == 200

    response = await admin_client.get("/api/v1/admin/storage", params={"limit": 1000})

    assert response.status_code == 200, response.text
    owners = {o["owner_id"]: o for o in response.json()["items"]}
    a, b = owners[str(await owner_of(resources, key))], owners[str(await owner_of(resources, other_key))]
    assert (a["files_stored"], a["bytes_stored"], a["uploads_receiving"], a["bytes_in_sessions"]) == (2, len(small) + len(big), 0, 0)
    assert a["incomplete_multipart_uploads"] == 0
    assert (b["files_stored"], b["bytes_stored"], b["uploads_receiving"], b["bytes_in_sessions"]) == (0, 0, 1, CHUNK)
    assert b["incomplete_multipart_uploads"] == 1
    assert response.json()["total"] >= 2

    assert (await admin_client.post(f"/api/v1/admin/uploads/{upload['id']}/cancel")).status_code == 200
    after = {o["owner_id"]: o for o in (await admin_client.get("/api/v1/admin/storage", params={"limit": 1000})).json()["items"]}
    gone = after.get(b["owner_id"])
    assert gone is None or (gone["uploads_receiving"], gone["incomplete_multipart_uploads"]) == (0, 0)
    page = (await admin_client.get("/api/v1/admin/storage", params={"limit": 1, "offset": 0})).json()
    assert len(page["items"]) == 1 and page["limit"] == 1
    assert (await admin_client.get("/api/v1/admin/storage", params={"offset": -1})).status_code == 422


async def test_other_keys_get_403(client: httpx.AsyncClient) -> None:
    data = csv_bytes(2 * CHUNK, seed=55)
    upload = await start(client, data)
    for method, path in (("POST", f"/api/v1/admin/uploads/{upload['id']}/cancel"), ("GET", "/api/v1/admin/storage")):
        response = await client.request(method, path)
        assert response.status_code == 403, (path, response.text)
        assert "--admin" in response.json()["detail"]
    assert (await client.get(f"/api/v1/uploads/{upload['id']}")).json()["state"] == "receiving"
    assert (await client.delete(f"/api/v1/uploads/{upload['id']}")).status_code == 204


async def test_an_admin_cancels_a_tus_upload_and_its_tail_is_dropped(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    tus = {"Tus-Resumable": "1.0.0"}
    data = csv_bytes(2 * CHUNK, seed=56)
    created = await client.post("/api/v1/tus/", headers={**tus, "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["location"]).path
    upload_id = path.rstrip("/").rsplit("/", 1)[1]
    sent = await client.patch(
        path,
        content=data[: CHUNK + 1000],
        headers={**tus, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
    )
    assert sent.status_code == 204, sent.text
    tail = f"tus-tails/{upload_id}"
    assert resources.store.stat(tail) is not None
    owner = str(await owner_of(resources, key))
    storage = (await admin_client.get("/api/v1/admin/storage", params={"limit": 1000})).json()["items"]
    mine = next(o for o in storage if o["owner_id"] == owner)
    assert (mine["uploads_receiving"], mine["bytes_in_sessions"]) == (1, CHUNK + 1000)
    assert mine["incomplete_multipart_uploads"] == 1

    response = await admin_client.post(f"/api/v1/admin/uploads/{upload_id}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "aborted"
    assert resources.store.stat(tail) is None
    assert incomplete_keys(resources, f"files/{owner}/") == []
    assert (await client.head(path, headers=tus)).status_code == 404
