"""Batch uploads: ``POST /api/v1/files`` with several ``file`` parts, streamed part by part."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.resources import Resources
from tests.integration.uploads.support import MiB, csv_bytes, read_object, sha256
from tests.support.servers import ApiServer

TSV = b"id\tname\n1\talpha\n2\tbeta\n"
BINARY = bytes(range(256)) * 64


@pytest.fixture
async def small(small_api: ApiServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the API whose file limit is 12 MiB."""
    async with httpx.AsyncClient(base_url=small_api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as http:
        yield http


async def test_mixed_batch_is_207_with_per_file_results(small: httpx.AsyncClient, resources: Resources) -> None:
    big = csv_bytes(11 * MiB, seed=1)
    good = csv_bytes(3000, seed=2)
    response = await small.post(
        "/api/v1/files",
        params={"process": "false"},
        files=[
            ("file", ("big.csv", big, "text/csv")),
            ("file", ("picture.bin", BINARY, "application/octet-stream")),
            ("sha256", (None, sha256(b"not these bytes"))),
            ("file", ("tampered.csv", good, "text/csv")),
            ("file", ("too-big.csv", csv_bytes(13 * MiB, seed=3), "text/csv")),
            ("sha256", (None, sha256(TSV))),
            ("file", ("table.tsv", TSV, "text/tab-separated-values")),
            ("file", ("", b"", "text/csv")),
        ],
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["count"] == 2
    assert body["failure_count"] == 4
    assert body.get("batch_id") is None  # process=false: no jobs, no batch
    assert body["duration_ms"] >= 0
    results = body["results"]
    assert [(r["filename"], r["status"], r["status_code"]) for r in results] == [
        ("big.csv", "stored", 201),
        ("picture.bin", "failed", 415),
        ("tampered.csv", "failed", 422),
        ("too-big.csv", "failed", 413),
        ("table.tsv", "stored", 201),
        ("upload", "failed", 422),
    ]
    assert "CSV" in results[1]["detail"] and "SHA-256" in results[2]["detail"]
    stored = {r["filename"]: r["file"] for r in results if r["status"] == "stored"}
    assert stored["table.tsv"]["kind"] == "tsv" and stored["table.tsv"]["sha256"] == sha256(TSV)
    assert read_object(resources, stored["big.csv"]["storage_key"]) == big
    assert read_object(resources, stored["table.tsv"]["storage_key"]) == TSV
    assert (await small.get(f"/api/v1/files/{stored['big.csv']['id']}/content")).content == big

    failed = (await small.get("/api/v1/files", params={"status": "failed"})).json()["items"]
    assert {f["filename"] for f in failed} >= {"tampered.csv", "too-big.csv"}
    assert [u.key for u in resources.store.list_incomplete("files/") if u.key in {f["storage_key"] for f in failed}] == []


async def test_all_stored_is_201(client: httpx.AsyncClient, resources: Resources) -> None:
    bodies = [csv_bytes(1000 + i, seed=10 + i) for i in range(3)]
    response = await client.post(
        "/api/v1/files",
        params={"process": "false"},
        files=[("file", (f"part-{i}.csv", body, "text/csv")) for i, body in enumerate(bodies)],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["count"], body["failure_count"]) == (3, 0)
    for result, data in zip(body["results"], bodies, strict=True):
        assert read_object(resources, result["file"]["storage_key"]) == data


async def test_files_of_one_request_share_one_batch(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/files",
        files=[("file", (f"part-{i}.csv", csv_bytes(500, seed=20 + i), "text/csv")) for i in range(3)]
        + [("file", ("a.bin", BINARY, "x/y"))],
    )
    assert response.status_code == 207, response.text
    body = response.json()
    assert (body["count"], body["failure_count"]) == (3, 1)
    job_ids = {r["file"]["job_id"] for r in body["results"] if r["status"] == "stored"}
    assert len(job_ids) == 3 and None not in job_ids
    jobs = (await client.get("/api/v1/jobs", params={"batch_id": body["batch_id"]})).json()["items"]
    assert {j["id"] for j in jobs} == job_ids
    assert {j["batch_id"] for j in jobs} == {body["batch_id"]}


async def test_none_stored_answers_the_failures_status(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/files", files=[("file", ("a.bin", BINARY, "x/y")), ("file", ("b.bin", BINARY, "x/y"))]
    )
    assert response.status_code == 415
    body = response.json()
    assert (body["count"], body["failure_count"]) == (0, 2)
    assert "0 of 2 files stored" in body["detail"]


async def test_more_than_20_files_is_400_and_keeps_none(client: httpx.AsyncClient) -> None:
    parts = [("file", (f"f{i}.csv", b"a,b\n1,2\n", "text/csv")) for i in range(21)]
    response = await client.post("/api/v1/files", files=parts, params={"process": "false"})
    assert response.status_code == 400
    body = response.json()
    assert "at most 20" in body["detail"]
    assert (body["count"], body["failure_count"], body["results"]) == (0, 20, [])
    assert body["duration_ms"] >= 0
    assert (await client.get("/api/v1/files")).json()["total"] == 0


async def test_no_file_or_no_multipart_is_refused(client: httpx.AsyncClient) -> None:
    only_field = await client.post("/api/v1/files", files=[("sha256", (None, "x"))])
    assert only_field.status_code == 400 and "1 to 20" in only_field.json()["detail"]
    not_multipart = await client.post("/api/v1/files", content=b"a,b\n", headers={"Content-Type": "text/csv"})
    assert not_multipart.status_code == 415 and "multipart/form-data" in not_multipart.json()["detail"]
    assert {"count", "failure_count", "duration_ms", "results"} <= set(not_multipart.json())
    other_name = await client.post("/api/v1/files", files=[("upload", ("a.csv", b"a,b\n", "text/csv"))])
    assert other_name.status_code == 400


async def test_a_body_cut_inside_a_file_stores_nothing_of_it(client: httpx.AsyncClient, resources: Resources) -> None:
    complete = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ok.csv\"\r\n\r\na,b\n1,2\n"
    cut = b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.csv\"\r\n\r\na,b\n3,"
    response = await client.post(
        "/api/v1/files",
        content=complete + cut,
        params={"process": "false"},
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [(r["filename"], r["status_code"]) for r in results] == [("ok.csv", 201), ("cut.csv", 422)]
    assert "ended in the middle" in results[1]["detail"]
    assert read_object(resources, results[0]["file"]["storage_key"]) == b"a,b\n1,2\n"
