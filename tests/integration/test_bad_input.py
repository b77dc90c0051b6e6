"""Inputs that used to answer 500: invisible characters in names, huge offsets, deeply nested JSON."""

from __future__ import annotations

import uuid

import httpx
import pytest

from app.params import MAX_OFFSET
from app.resources import Resources
from tests.integration.uploads.support import incomplete_keys, session_key

CSV = b"id,name\n1,alpha\n2,beta\n"


async def owner_prefix(client: httpx.AsyncClient) -> str:
    record = (await client.put("/api/v1/files/probe.csv", params={"process": "false"}, content=CSV)).json()
    return record["storage_key"].rsplit("/", 1)[0] + "/"


@pytest.mark.parametrize(
    ("segment", "clean"),
    [
        ("nul%00byte.csv", "nulbyte.csv"),
        ("invoice%E2%80%AEgpj.csv", "invoicegpj.csv"),
        ("zero%E2%80%8Bwidth%C2%85%EF%BB%BF.csv", "zerowidth.csv"),
        ("bell%07and%1Bescape.csv", "bellandescape.csv"),
    ],
)
async def test_single_shot_names_lose_invisible_characters(client: httpx.AsyncClient, segment: str, clean: str) -> None:
    response = await client.put(f"/api/v1/files/{segment}", params={"process": "false"}, content=CSV)

    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["filename"], record["original_filename"]) == (clean, clean)
    stored = (await client.get(f"/api/v1/files/{record['id']}")).json()
    assert (stored["filename"], stored["original_filename"]) == (clean, clean)
    content = await client.get(f"/api/v1/files/{record['id']}/content")
    assert content.status_code == 200 and content.content == CSV


def multipart(names: list[str], boundary: str = "XyZ") -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode() + CSV + b"\r\n"
        for name in names
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


async def test_batch_part_names_lose_invisible_characters_and_every_part_is_stored(client: httpx.AsyncClient) -> None:
    names = ["first.csv", "bad\x00name\u202egpj.csv", "last\u200b.csv"]
    response = await client.post(
        "/api/v1/files",
        params={"process": "false"},
        content=multipart(names),
        headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
    )

    assert response.status_code == 201, response.text
    results = response.json()["results"]
    assert [(r["filename"], r["status"]) for r in results] == [
        ("first.csv", "stored"),
        ("badnamegpj.csv", "stored"),
        ("last.csv", "stored"),
    ]
    for result in results:
        stored = (await client.get(f"/api/v1/files/{result['file']['id']}")).json()
        assert stored["status"] == "stored"
        assert stored["filename"] == stored["original_filename"] == result["filename"]


async def test_session_names_lose_invisible_characters(client: httpx.AsyncClient, resources: Resources) -> None:
    response = await client.post("/api/v1/uploads", json={"filename": "big\x00\u202egpj.csv", "size": len(CSV)})

    assert response.status_code == 201, response.text
    session = response.json()
    assert session["filename"] == "biggpj.csv"
    chunk = await client.put(f"/api/v1/uploads/{session['id']}/chunks/0", content=CSV)
    assert chunk.status_code == 200, chunk.text
    done = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["filename"] == done.json()["original_filename"] == "biggpj.csv"


async def test_a_refused_session_creates_no_multipart_upload(client: httpx.AsyncClient, resources: Resources) -> None:
    prefix = await owner_prefix(client)
    before = set(incomplete_keys(resources, prefix))

    for content_type in ("text/csv\x00", "text/csv\r\nX-Injected: 1", "csv", "text/\u202ecsv"):
        response = await client.post(
            "/api/v1/uploads", json={"filename": "a.csv", "size": len(CSV), "content_type": content_type}
        )
        assert response.status_code == 422, (content_type, response.text)
        assert "content_type" in response.json()["detail"]
    assert set(incomplete_keys(resources, prefix)) == before

    accepted = await client.post(
        "/api/v1/uploads", json={"filename": "a.csv", "size": len(CSV), "content_type": "text/csv; charset=utf-8"}
    )
    assert accepted.status_code == 201, accepted.text
    key = await session_key(resources, accepted.json()["id"])
    assert set(incomplete_keys(resources, prefix)) == before | {key}
    assert (await client.delete(f"/api/v1/uploads/{accepted.json()['id']}")).status_code == 204
    assert set(incomplete_keys(resources, prefix)) == before


HUGE = "100000000000000000000"


@pytest.mark.parametrize(
    ("path", "lists"),
    [
        ("/api/v1/files", True),
        ("/api/v1/jobs", True),
        (f"/api/v1/files/{uuid.uuid4()}/rows", False),
        (f"/api/v1/jobs/{uuid.uuid4()}/rejects", False),
    ],
)
async def test_offsets_past_the_bound_are_422_naming_offset(client: httpx.AsyncClient, path: str, lists: bool) -> None:
    for value in (HUGE, str(MAX_OFFSET + 1), "-1"):
        response = await client.get(path, params={"offset": value})
        assert response.status_code == 422, (value, response.text)
        assert "'offset'" in response.json()["detail"], response.text
    if lists:
        largest = await client.get(path, params={"offset": MAX_OFFSET})
        assert largest.status_code == 200, largest.text
        assert largest.json()["items"] == [] and largest.json()["offset"] == MAX_OFFSET


async def test_admin_offset_is_bounded_too(admin_client: httpx.AsyncClient) -> None:
    response = await admin_client.get("/api/v1/admin/uploads", params={"offset": HUGE})
    assert response.status_code == 422 and "'offset'" in response.json()["detail"], response.text


async def test_bad_query_parameters_are_422_naming_them(client: httpx.AsyncClient) -> None:
    limit = await client.get("/api/v1/files", params={"limit": 0})
    assert limit.status_code == 422 and "'limit'" in limit.json()["detail"], limit.text
    status = await client.get("/api/v1/files", params={"status": "bogus\x00"})
    assert status.status_code == 422 and "'status'" in status.json()["detail"], status.text
    assert (await client.get("/api/v1/files", params={"status": "stored"})).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/uploads", "/api/v1/events/links"])
@pytest.mark.parametrize(
    "body",
    [b"[" * 5000, b"{" * 5000, b'{"filename": ' + b"[" * 40 + b"]" * 40 + b"}"],
    ids=["open-arrays", "open-objects", "closed-40-deep"],
)
async def test_deeply_nested_json_is_400(client: httpx.AsyncClient, path: str, body: bytes) -> None:
    response = await client.post(path, content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400, response.text
    assert "levels deep" in response.json()["detail"]


async def test_brackets_inside_strings_are_not_nesting(client: httpx.AsyncClient) -> None:
    too_deep = b'{"filename": ' + b"[" * 33 + b"]" * 33 + b', "size": 10}'
    refused = await client.post("/api/v1/uploads", content=too_deep, headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and "levels deep" in refused.json()["detail"], refused.text

    name = "[" * 100 + "{.csv"
    response = await client.post("/api/v1/uploads", json={"filename": name, "size": len(CSV)})
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == name
    assert (await client.delete(f"/api/v1/uploads/{response.json()['id']}")).status_code == 204
