"""A multi-file upload answers in the shape clients of the parallel S3 uploader read, beside ``results``."""

from __future__ import annotations

import httpx

CSV = b"a,b\n1,2\n"
BINARY = bytes(range(256)) * 4


async def test_partial_success_lists_the_stored_files_and_the_failures(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/files",
        params={"process": "false"},
        files=[("file", ("one.csv", CSV, "text/csv")), ("file", ("blob\u202e.bin", BINARY, "x/y"))],
    )

    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["success"], body["partial_success"]) == (False, True)
    assert (body["count"], body["failure_count"]) == (1, 1)
    stored = next(r["file"] for r in body["results"] if r["status"] == "stored")
    assert body["files"] == [stored] and stored["filename"] == "one.csv"
    assert (await client.get(f"/api/v1/files/{stored['id']}/content")).content == CSV
    [failure] = body["failures"]
    assert failure["original_name"] == "blob.bin"
    assert failure["error"] and failure["error"] == body["results"][1]["detail"]
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0


async def test_all_stored_is_success(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/files", params={"process": "false"}, files=[("file", (f"p{i}.csv", CSV, "text/csv")) for i in range(2)]
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["success"], body["partial_success"], body["failures"]) == (True, False, [])
    assert [f["filename"] for f in body["files"]] == ["p0.csv", "p1.csv"] and body["count"] == 2


async def test_none_stored_is_neither_success(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/files", files=[("file", ("a.bin", BINARY, "x/y")), ("file", ("b.bin", BINARY, "x/y"))]
    )

    assert response.status_code == 415, response.text
    body = response.json()
    assert (body["success"], body["partial_success"], body["files"]) == (False, False, [])
    assert [f["original_name"] for f in body["failures"]] == ["a.bin", "b.bin"]


async def test_a_request_refused_as_a_whole_has_the_same_shape(client: httpx.AsyncClient) -> None:
    parts = [("file", (f"f{i}.csv", CSV, "text/csv")) for i in range(21)]
    response = await client.post("/api/v1/files", files=parts, params={"process": "false"})

    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["success"], body["partial_success"], body["files"], body["count"]) == (False, False, [], 0)
    assert len(body["failures"]) == body["failure_count"] == 20
    assert all("at most 20" in f["error"] for f in body["failures"])
    assert (await client.get("/api/v1/files")).json()["total"] == 0

    not_multipart = await client.post("/api/v1/files", content=CSV, headers={"Content-Type": "text/csv"})
    assert not_multipart.status_code == 415
    assert (not_multipart.json()["success"], not_multipart.json()["failures"]) == (False, [])
