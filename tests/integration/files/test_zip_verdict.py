"""A ZIP is judged whole: accepted provisionally from its first entry, confirmed or refused (415,
nothing kept, the record saying why) from its central directory when the body ends."""

from __future__ import annotations

import io
import secrets
import zipfile

import httpx
import openpyxl

from app.resources import Resources
from tests.integration.uploads.support import CHUNK, incomplete_keys, read_object, send, session_key, start

MiB = 1024 * 1024


def openpyxl_bytes(rows: int) -> bytes:
    book = openpyxl.Workbook()
    for i in range(rows):
        book.active.append([i, f"name {i}", i * 1.5])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def document_bytes(size: int) -> bytes:
    """An OOXML package that is not a workbook (a word-processing one), ``size`` bytes or more."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/media/image1.bin", secrets.token_bytes(size))
        archive.writestr("word/document.xml", "<w:document/>")
    return buffer.getvalue()


async def test_an_openpyxl_workbook_past_the_head_is_stored(client: httpx.AsyncClient, resources: Resources) -> None:
    body = openpyxl_bytes(5000)
    assert len(body) > 64 * 1024
    response = await client.put("/api/v1/files/book.xlsx", content=body)
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == "xlsx"
    assert read_object(resources, response.json()["storage_key"]) == body


async def test_a_zip_that_is_no_workbook_is_refused_at_its_end(client: httpx.AsyncClient, resources: Resources) -> None:
    prefix = (await client.put("/api/v1/files/probe.csv", content=b"a\n1\n")).json()["storage_key"].rsplit("/", 1)[0]
    for size in (200_000, 12 * MiB):  # one PUT, and a multipart upload
        response = await client.put("/api/v1/files/letter.xlsx", content=document_bytes(size))
        assert response.status_code == 415, response.text
        assert "not an XLSX workbook (it has no xl/workbook.xml)" in response.json()["detail"]
        failed = (await client.get("/api/v1/files", params={"status": "failed", "limit": 1})).json()["items"][0]
        assert failed["filename"] == "letter.xlsx" and "no xl/workbook.xml" in failed["error"]
        assert resources.store.stat(failed["storage_key"]) is None
    assert incomplete_keys(resources, prefix) == []


async def test_batch_refuses_the_document_and_keeps_the_workbook(client: httpx.AsyncClient) -> None:
    files = [("file", ("letter.xlsx", document_bytes(200_000))), ("file", ("book.xlsx", openpyxl_bytes(5000)))]
    response = await client.post("/api/v1/files", files=files)
    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [(r["filename"], r["status_code"]) for r in results] == [("letter.xlsx", 415), ("book.xlsx", 201)]
    assert "no xl/workbook.xml" in results[0]["detail"]


async def test_a_chunked_document_is_refused_at_complete(client: httpx.AsyncClient, resources: Resources) -> None:
    body = document_bytes(CHUNK + 100_000)
    session = await start(client, body, filename="letter.xlsx")
    key = await session_key(resources, session["id"])
    for index in range(session["total_chunks"]):
        assert (await send(client, session["id"], body, index)).status_code == 200  # chunk 0 is provisional
    refused = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert refused.status_code == 415, refused.text
    assert "no xl/workbook.xml" in refused.json()["detail"]
    state = (await client.get(f"/api/v1/uploads/{session['id']}")).json()
    assert state["state"] == "failed" and "no xl/workbook.xml" in state["error"]
    assert resources.store.stat(key) is None
    assert incomplete_keys(resources, key) == []


async def test_a_chunked_openpyxl_workbook_is_confirmed_at_complete(client: httpx.AsyncClient, resources: Resources) -> None:
    body = openpyxl_bytes(5000)
    session = await start(client, body, filename="book.xlsx")
    assert (await send(client, session["id"], body, 0)).status_code == 200
    done = await client.post(f"/api/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["kind"] == "xlsx"
    assert read_object(resources, done.json()["storage_key"]) == body
