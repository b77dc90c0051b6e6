"""Helpers shared by the chunked-upload, batch and client tests."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
from sqlalchemy import select

from app.resources import Resources
from db.models import UploadSession

MiB = 1024 * 1024
CHUNK = 5 * MiB


def csv_bytes(size: int, seed: int = 0) -> bytes:
    """A CSV of exactly ``size`` bytes whose rows all differ (so a misplaced chunk shows)."""
    header = b"id,uid,note\n"
    rows = [header]
    total = len(header)
    i = seed * 10_000_000
    while total < size:
        row = f"{i},{uuid.UUID(int=i * 7919 + 1)},row {i} of a chunked test file\n".encode()
        rows.append(row)
        total += len(row)
        i += 1
    return b"".join(rows)[:size]


def read_object(resources: Resources, key: str) -> bytes:
    stream = resources.store.open(key)
    try:
        return stream.read()
    finally:
        stream.close()
        stream.release_conn()  # type: ignore[attr-defined]


def incomplete_keys(resources: Resources, prefix: str) -> list[str]:
    return [u.key for u in resources.store.list_incomplete(prefix)]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_of(data: bytes, index: int, chunk_size: int = CHUNK) -> bytes:
    return data[index * chunk_size : (index + 1) * chunk_size]


async def start(client: httpx.AsyncClient, data: bytes, **fields: Any) -> dict[str, Any]:
    body = {"filename": "export.csv", "size": len(data), "chunk_size": CHUNK, **fields}
    response = await client.post("/api/v1/uploads", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def send(client: httpx.AsyncClient, upload_id: str, data: bytes, index: int, **headers: str) -> httpx.Response:
    return await client.put(f"/api/v1/uploads/{upload_id}/chunks/{index}", content=chunk_of(data, index), headers=headers)


async def session_key(resources: Resources, upload_id: str) -> str:
    """The storage key of a session (the API does not show it before completion)."""
    async with resources.sessionmaker() as db:
        key = await db.scalar(select(UploadSession.storage_key).where(UploadSession.id == uuid.UUID(upload_id)))
    assert key is not None
    return key
