"""Admin routes: every owner's numbers and sessions, cancelling any job; 403 for other keys."""

from __future__ import annotations

import uuid

import httpx

from app.resources import Resources
from tests.integration.events.support import insert_job, owner_of
from tests.integration.uploads.support import CHUNK, csv_bytes, send, start


async def test_stats_count_every_owners_files_and_sessions(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient
) -> None:
    before = (await admin_client.get("/api/v1/admin/stats")).json()
    body = b"a,b\n1,2\n"
    stored = await client.put("/api/v1/files/small.csv", params={"process": "false"}, content=body)
    assert stored.status_code == 201, stored.text
    data = csv_bytes(2 * CHUNK, seed=41)
    upload = await start(client, data)
    assert (await send(client, upload["id"], data, 0)).status_code == 200

    response = await admin_client.get("/api/v1/admin/stats")
    assert response.status_code == 200, response.text
    after = response.json()
    was = before["files"].get("stored", {"count": 0, "bytes": 0})
    assert after["files"]["stored"] == {"count": was["count"] + 1, "bytes": was["bytes"] + len(body)}
    # Other tests' sessions may expire meanwhile: this one is checked in the listing below.
    assert after["uploads_receiving"] >= 1 and after["upload_bytes_received"] >= CHUNK
    assert after["upload_bytes_expected"] >= len(data)
    assert after["incomplete_multipart_uploads"] >= 1
    assert after["api_keys"] >= 2 and after["owners"] >= 2

    sessions = (await admin_client.get("/api/v1/admin/uploads", params={"limit": 1000})).json()
    mine = next(s for s in sessions["items"] if s["id"] == upload["id"])
    assert (mine["received_chunks"], mine["bytes_received"], mine["total_chunks"]) == (1, CHUNK, 2)
    assert sessions["total"] >= 1
    assert (await client.delete(f"/api/v1/uploads/{upload['id']}")).status_code == 204


async def test_an_admin_cancels_any_owners_job(
    client: httpx.AsyncClient, admin_client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    response = await admin_client.post(f"/api/v1/admin/jobs/{job.id}/cancel")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "cancelled"
    assert (await client.get(f"/api/v1/jobs/{job.id}")).json()["state"] == "cancelled"
    assert (await admin_client.post(f"/api/v1/admin/jobs/{job.id}/cancel")).status_code == 409
    assert (await admin_client.post(f"/api/v1/admin/jobs/{uuid.uuid4()}/cancel")).status_code == 404


async def test_other_keys_get_403_saying_what_is_needed(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    job = await insert_job(resources, await owner_of(resources, key))
    for method, path in (
        ("GET", "/api/v1/admin/stats"),
        ("GET", "/api/v1/admin/uploads"),
        ("POST", f"/api/v1/admin/jobs/{job.id}/cancel"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 403, (path, response.text)
        assert "--admin" in response.json()["detail"]
    assert (await client.get(f"/api/v1/jobs/{job.id}")).json()["state"] == "pending"
