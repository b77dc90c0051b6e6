"""Helpers for tus tests: headers, creation, and reading back what was stored."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest

TUS = {"Tus-Resumable": "1.0.0"}
BODY = {**TUS, "Content-Type": "application/offset+octet-stream"}
MiB = 1024 * 1024
TUS_JS_VERSION = "4.3.1"


@pytest.fixture(scope="session")
def tus_js() -> Path:
    """tus-js-client from the npm registry, installed once per machine; its ``node_modules``."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are needed for the tus-js-client tests")
    prefix = Path(tempfile.gettempdir()) / f"sluice-tus-js-client-{TUS_JS_VERSION}"
    modules = prefix / "node_modules"
    if not (modules / "tus-js-client" / "package.json").exists():
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(prefix), f"tus-js-client@{TUS_JS_VERSION}"],
            check=True,
            timeout=300,
            capture_output=True,
        )
    return modules


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def csv_bytes(size: int) -> bytes:
    """A CSV file of whole, distinct rows, at least ``size`` bytes."""
    rows = [b"id,name\n"]
    total = len(rows[0])
    i = 0
    while total < size:
        row = f"{i},row-{i:09d}-{hashlib.md5(str(i).encode()).hexdigest()}\n".encode()
        rows.append(row)
        total += len(row)
        i += 1
    return b"".join(rows)


async def create(
    client: httpx.AsyncClient, length: int | None, *, filename: str = "t.csv", extra: dict[str, str] | None = None
) -> str:
    """Creates an upload; returns its path (``/api/v1/tus/<id>``)."""
    headers = {**TUS, "Upload-Metadata": metadata(filename=filename)}
    if length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(length)
    headers |= extra or {}
    created = await client.post("/api/v1/tus/", headers=headers)
    assert created.status_code == 201, created.text
    return httpx.URL(created.headers["location"]).path


async def send(client: httpx.AsyncClient, path: str, offset: int, data: bytes, **headers: str) -> httpx.Response:
    return await client.patch(path, content=data, headers={**BODY, "Upload-Offset": str(offset), **headers})


async def stored(client: httpx.AsyncClient, file_id: str) -> bytes:
    response = await client.get(f"/api/v1/files/{file_id}/content")
    assert response.status_code == 200, response.text
    return response.content
