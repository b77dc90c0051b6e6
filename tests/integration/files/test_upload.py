"""Single-shot uploads through the real API into the real object store."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import zipfile

import httpx
import pytest

from app.resources import Resources
from tests.integration.uploads.support import read_object
from tests.support.servers import ApiServer, FaultProxy, free_port

MiB = 1024 * 1024
CSV = b"id,name,amount\n1,alpha,1.50\n2,beta,2.25\n"


def csv_bytes(size: int) -> bytes:
    """A CSV of roughly ``size`` bytes with varied rows (not one repeated block)."""
    header = b"id,uid,note\n"
    rows = []
    total = len(header)
    i = 0
    while total < size:
        row = f"{i},{uuid.UUID(int=i * 7919)},row number {i} of a test file\n".encode()
        rows.append(row)
        total += len(row)
        i += 1
    return (header + b"".join(rows))[:size]


def xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", "<worksheet/>")
    return buffer.getvalue()


def incomplete_uploads(resources: Resources, owner_prefix: str = "files/") -> list[str]:
    return [u.key for u in resources.store.list_incomplete(owner_prefix)]


async def owner_prefix(client: httpx.AsyncClient) -> str:
    """The storage prefix of the client's owner, learned from a stored file."""
    record = (await client.put("/api/v1/files/probe.csv", content=CSV)).json()
    return record["storage_key"].rsplit("/", 1)[0] + "/"


async def test_64_mib_upload_reads_back_identical(client: httpx.AsyncClient, resources: Resources) -> None:
    body = csv_bytes(64 * MiB)
    response = await client.put("/api/v1/files/sales-2024.csv", content=body)

    assert response.status_code == 201, response.text
    record = response.json()
    assert record["status"] == "stored"
    assert record["size"] == len(body)
    assert record["sha256"] == hashlib.sha256(body).hexdigest()
    assert record["kind"] == "csv"
    assert record["filename"] == "sales-2024.csv"
    assert record["duration_ms"] >= 0
    assert record["id"] in record["storage_key"] and "sales" not in record["storage_key"]
    assert read_object(resources, record["storage_key"]) == body

    content = await client.get(f"/api/v1/files/{record['id']}/content")
    assert content.status_code == 200
    assert content.content == body
    assert "sales-2024.csv" in content.headers["content-disposition"]


async def test_checksum_header_is_verified(client: httpx.AsyncClient, resources: Resources) -> None:
    good = hashlib.sha256(CSV).hexdigest()
    ok = await client.put("/api/v1/files/a.csv", content=CSV, headers={"X-Content-SHA256": good.upper()})
    assert ok.status_code == 201
    assert ok.json()["sha256"] == good

    prefix = await owner_prefix(client)
    before = {o for o in incomplete_uploads(resources, prefix)}
    for body in (CSV, csv_bytes(12 * MiB)):
        bad = await client.put("/api/v1/files/b.csv", content=body, headers={"X-Content-SHA256": "0" * 64})
        assert bad.status_code == 422
        assert "SHA-256" in bad.json()["detail"]
    failed = (await client.get("/api/v1/files", params={"status": "failed"})).json()["items"]
    assert len(failed) == 2
    for record in failed:
        assert resources.store.stat(record["storage_key"]) is None
        assert "SHA-256" in record["error"]
    assert {o for o in incomplete_uploads(resources, prefix)} == before

    malformed = await client.put("/api/v1/files/c.csv", content=CSV, headers={"X-Content-SHA256": "xyz"})
    assert malformed.status_code == 422
    assert "64 hexadecimal" in malformed.json()["detail"]


async def test_empty_body_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/files/empty.csv", content=b"")
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "body", "kind"),
    [
        ("report.xlsx", CSV, "csv"),
        ("data.csv", xlsx_bytes(), "xlsx"),
        ("tabs.txt", b"a\tb\tc\n1\t2\t3\n", "tsv"),
        ("utf16.csv", "a,b\nä,ö\n".encode("utf-16"), "csv"),
        ("bom.csv", b"\xef\xbb\xbfa,b\n1,2\n", "csv"),
        ("latin1.csv", "name,city\nJosé,Málaga\n".encode("latin-1"), "csv"),
    ],
)
async def test_kind_comes_from_the_bytes(client: httpx.AsyncClient, name: str, body: bytes, kind: str) -> None:
    response = await client.put(f"/api/v1/files/{name}", content=body)
    assert response.status_code == 201, response.text
    assert response.json()["kind"] == kind


@pytest.mark.parametrize(
    "body",
    [b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, b"PK\x03\x04" + b"\x00" * 200, b"a,b\n1,\x00\n"],
)
async def test_other_types_get_415_naming_what_is_accepted(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.put("/api/v1/files/image.csv", content=body)
    assert response.status_code == 415
    assert "CSV" in response.json()["detail"] and "XLSX" in response.json()["detail"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("dir/sub/name.csv", "name.csv"),
        ("a%5Cb%5Cwin.csv", "win.csv"),
        ("bad%01%7Fname.csv", "badname.csv"),
        ("..hidden.csv", "hidden.csv"),
    ],
)
async def test_filenames_are_sanitised(client: httpx.AsyncClient, path: str, expected: str) -> None:
    response = await client.put(f"/api/v1/files/{path}", content=CSV)
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["filename"] == expected
    assert record["storage_key"].endswith(record["id"])


async def test_long_filename_is_cut_to_255_bytes_keeping_extension(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/v1/files/" + "é" * 300 + ".csv", content=CSV)
    assert response.status_code == 201
    name = response.json()["filename"]
    assert len(name.encode()) <= 255 and name.endswith(".csv")


async def test_declared_size_over_limit_is_refused_before_storing(
    small_api: ApiServer, key: str, resources: Resources
) -> None:
    async with httpx.AsyncClient(base_url=small_api.url, headers={"Authorization": f"Bearer {key}"}) as http:
        body = csv_bytes(13 * MiB)
        response = await http.put("/api/v1/files/big.csv", content=body)
        assert response.status_code == 413
        assert "limit" in response.json()["detail"]
        listing = (await http.get("/api/v1/files", params={"status": "failed"})).json()
        assert listing["total"] == 0
        assert (await http.get("/api/v1/files")).json()["total"] == 0


async def test_streamed_body_over_limit_is_cut_and_aborted(
    small_api: ApiServer, key: str, resources: Resources
) -> None:
    async def body():
        block = csv_bytes(MiB)
        for _ in range(30):
            yield block

    async with httpx.AsyncClient(base_url=small_api.url, headers={"Authorization": f"Bearer {key}"}) as http:
        response = await http.put("/api/v1/files/endless.csv", content=body())
        assert response.status_code == 413
        failed = (await http.get("/api/v1/files", params={"status": "failed"})).json()["items"]
    assert len(failed) == 1
    assert "limit" in failed[0]["error"]
    assert resources.store.stat(failed[0]["storage_key"]) is None
    assert failed[0]["storage_key"] not in incomplete_uploads(resources)


async def test_client_disconnect_mid_body_leaves_nothing(
    api: ApiServer, client: httpx.AsyncClient, key: str, resources: Resources
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    head = (
        "PUT /api/v1/files/dropped.csv HTTP/1.1\r\nHost: test\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {40 * MiB}\r\n\r\n"
    )
    writer.write(head.encode())
    writer.write(csv_bytes(16 * MiB))
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()

    failed: list[dict] = []
    for _ in range(100):
        failed = (await client.get("/api/v1/files", params={"status": "failed"})).json()["items"]
        if failed:
            break
        await asyncio.sleep(0.1)
    assert len(failed) == 1
    assert "disconnected" in failed[0]["error"]
    assert resources.store.stat(failed[0]["storage_key"]) is None
    assert failed[0]["storage_key"] not in incomplete_uploads(resources)


async def test_s3_failure_mid_upload_fails_the_record_and_aborts(
    resources: Resources, key: str, flaky_s3: FaultProxy
) -> None:
    server = ApiServer(resources.settings.replace(s3_endpoint=flaky_s3.endpoint, part_size=5 * MiB))
    try:
        flaky_s3.cut_after = 2 * MiB
        async with httpx.AsyncClient(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
        ) as http:
            response = await http.put("/api/v1/files/unlucky.csv", content=csv_bytes(12 * MiB))
            assert response.status_code == 503
            assert "object store" in response.json()["detail"]
            failed = (await http.get("/api/v1/files", params={"status": "failed"})).json()["items"]
    finally:
        server.stop()
    assert len(failed) == 1
    assert failed[0]["error"]
    assert resources.store.stat(failed[0]["storage_key"]) is None
    assert failed[0]["storage_key"] not in incomplete_uploads(resources)


async def test_list_get_delete(client: httpx.AsyncClient, resources: Resources) -> None:
    ids = []
    for n in range(3):
        response = await client.put(f"/api/v1/files/f{n}.csv", content=CSV, params={"process": "false"})
        assert response.json()["process"] is False
        ids.append(response.json()["id"])

    page = (await client.get("/api/v1/files", params={"limit": 2})).json()
    assert page["total"] == 3
    assert [item["id"] for item in page["items"]] == ids[::-1][:2]
    rest = (await client.get("/api/v1/files", params={"limit": 2, "offset": 2})).json()
    assert [item["id"] for item in rest["items"]] == [ids[0]]

    one = (await client.get(f"/api/v1/files/{ids[1]}")).json()
    assert one["filename"] == "f1.csv"

    assert (await client.delete(f"/api/v1/files/{ids[1]}")).status_code == 204
    assert resources.store.stat(one["storage_key"]) is None
    assert (await client.get(f"/api/v1/files/{ids[1]}")).json()["status"] == "deleted"
    assert (await client.get(f"/api/v1/files/{ids[1]}/content")).status_code == 410
    assert (await client.get("/api/v1/files")).json()["total"] == 2
    assert (await client.get(f"/api/v1/files/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/api/v1/files/not-a-uuid")).status_code in (400, 404, 405)


async def test_owners_never_see_each_others_files(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, resources: Resources
) -> None:
    record = (await client.put("/api/v1/files/private.csv", content=CSV)).json()
    missing = await other_client.get(f"/api/v1/files/{uuid.uuid4()}")
    for response in (
        await other_client.get(f"/api/v1/files/{record['id']}"),
        await other_client.get(f"/api/v1/files/{record['id']}/content"),
        await other_client.delete(f"/api/v1/files/{record['id']}"),
    ):
        assert response.status_code == 404
        assert response.json().keys() == missing.json().keys()
    assert (await other_client.get("/api/v1/files")).json()["total"] == 0
    assert resources.store.stat(record["storage_key"]) is not None


async def test_requests_need_a_valid_key(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/api/v1/files")).status_code == 401
        wrong = await http.get("/api/v1/files", headers={"Authorization": "Bearer slk_nope"})
        assert wrong.status_code == 401
        assert "not valid" in wrong.json()["detail"]
        put = await http.put("/api/v1/files/x.csv", content=CSV)
        assert put.status_code == 401


async def test_health_and_ready(api: ApiServer, client: httpx.AsyncClient, resources: Resources) -> None:
    assert (await client.get("/api/v1/files")).status_code == 200
    async with httpx.AsyncClient(base_url=api.url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        ready = await http.get("/ready")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "s3": "ok"}
        assert "alive" in ready.json()["workers"]
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200 and 'path="/api/v1/files"' in metrics.text
        assert (await http.get("/schema/openapi.json")).status_code == 200

    blind = ApiServer(resources.settings.replace(s3_endpoint=f"127.0.0.1:{free_port()}"))
    try:
        async with httpx.AsyncClient(base_url=blind.url, timeout=30) as http:
            response = await http.get("/ready")
    finally:
        blind.stop()
    assert response.status_code == 503
    body = response.json()
    assert "s3" in body["status"]
    assert body["checks"]["postgres"] == "ok" and body["checks"]["s3"] != "ok"



async def test_an_upload_left_receiving_by_a_dead_api_is_failed(resources: Resources) -> None:
    from datetime import UTC, datetime, timedelta

    from db.models import File, FileKind, FileStatus
    from workers.maintenance import fail_stalled_files

    owner = uuid.uuid4()
    ttl = resources.settings.upload_stall_timeout
    async with resources.sessionmaker() as session:
        stalled = File(
            owner_id=owner, original_filename="s.csv", filename="s.csv", kind=FileKind.csv, bucket="b", storage_key="k"
        )
        session.add(stalled)
        await session.commit()

    await fail_stalled_files(
        resources.sessionmaker, resources.settings, now=datetime.now(UTC) + timedelta(seconds=ttl // 2)
    )
    async with resources.sessionmaker() as session:
        assert (await session.get_one(File, stalled.id)).status == FileStatus.receiving
    failed = await fail_stalled_files(
        resources.sessionmaker, resources.settings, now=datetime.now(UTC) + timedelta(seconds=ttl + 60)
    )
    assert failed >= 1
    async with resources.sessionmaker() as session:
        file = await session.get(File, stalled.id)
        assert file is not None and file.status == FileStatus.failed
        assert "stopped before the whole file arrived" in (file.error or "")
