"""Signed download links (``POST /api/v1/files/{id}/links``): the link serves the file's bytes with
no Authorization header, and nothing else: not once tampered with, expired, its key revoked, for
another file or owner, nor for a quarantined or deleted file."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote, urlsplit

import asyncpg
import httpx

from app.files.links import LINK_TTL_S, link_token
from app.resources import Resources
from tests.support.servers import ApiServer

MiB = 1024 * 1024


async def store(client: httpx.AsyncClient, name: str, body: bytes) -> dict:
    response = await client.put(f"/api/v1/files/{quote(name, safe='')}", params={"process": "false"}, content=body)
    assert response.status_code == 201, response.text
    return response.json()


async def mint(client: httpx.AsyncClient, file_id: str) -> str:
    response = await client.post(f"/api/v1/files/{file_id}/links")
    assert response.status_code == 201, response.text
    return response.json()["url"]


def big_csv() -> bytes:
    """About 3 MiB of rows that differ, so a chunk out of place would change the digest."""
    rows = [f"{i},{os.urandom(12).hex()}\n".encode() for i in range(110_000)]
    return b"id,token\n" + b"".join(rows)


async def key_id(client: httpx.AsyncClient) -> uuid.UUID:
    return uuid.UUID((await client.get("/api/v1/me")).json()["key_id"])


async def test_the_link_downloads_the_bytes_without_a_key(client: httpx.AsyncClient, api: ApiServer) -> None:
    body = big_csv()
    record = await store(client, "données été.csv", body)
    before = datetime.now(UTC)
    response = await client.post(f"/api/v1/files/{record['id']}/links")
    assert response.status_code == 201, response.text
    link = response.json()
    expires = datetime.fromisoformat(link["expires_at"])
    assert before + timedelta(seconds=LINK_TTL_S - 5) <= expires <= datetime.now(UTC) + timedelta(seconds=LINK_TTL_S + 5)
    # A same-origin path, not an absolute URL.
    assert link["url"].startswith(f"/api/v1/files/{record['id']}/download?link=")

    async with httpx.AsyncClient(base_url=api.url, timeout=60) as anonymous:
        async with anonymous.stream("GET", link["url"]) as download:
            assert download.status_code == 200, await download.aread()
            received = await download.aread()
        assert download.headers["content-disposition"] == f"attachment; filename*=UTF-8''{quote(record['filename'])}"
        assert int(download.headers["content-length"]) == len(body)
        assert hashlib.sha256(received).hexdigest() == hashlib.sha256(body).hexdigest() == record["sha256"]
        # The same link works again until it expires, and matches what the key's content route serves.
        again = await anonymous.get(link["url"])
        assert again.status_code == 200 and again.content == body
    keyed = await client.get(f"/api/v1/files/{record['id']}/content")
    assert keyed.content == body
    assert keyed.headers["content-disposition"] == download.headers["content-disposition"]
    assert keyed.headers["content-type"] == download.headers["content-type"]


async def test_tampered_and_malformed_links_are_refused(client: httpx.AsyncClient, api: ApiServer) -> None:
    record = await store(client, "a.csv", b"x,y\n1,2\n")
    neighbour = await store(client, "b.csv", b"x,y\n3,4\n")
    url = await mint(client, record["id"])
    token = parse_qs(urlsplit(url).query)["link"][0]
    kid, expires, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:

        async def download(file_id: str, link: str | None) -> httpx.Response:
            params = {} if link is None else {"link": link}
            return await anonymous.get(f"/api/v1/files/{file_id}/download", params=params)

        for forged in (
            f"{kid}.{expires}.{flipped}",  # signature changed
            f"{kid}.{int(expires) + 86_400}.{signature}",  # expiry pushed back
            f"{uuid.uuid4().hex}.{expires}.{signature}",  # another key's id
        ):
            refused = await download(record["id"], forged)
            assert refused.status_code == 403, refused.text
            assert "signature is not valid" in refused.json()["detail"]
            assert b"1,2" not in refused.content
        # A good token opens only the file it was made for.
        other_file = await download(neighbour["id"], token)
        assert other_file.status_code == 403 and b"3,4" not in other_file.content

        for broken in ("", "abc", f"{kid}.{expires}", f"{kid}.soon.{signature}", f"{token}.extra", "x.1.y"):
            refused = await download(record["id"], broken)
            assert refused.status_code == 401, (broken, refused.text)
            assert "link" in refused.json()["detail"]
        missing = await download(record["id"], None)
        assert missing.status_code == 401 and "link parameter" in missing.json()["detail"]
        # A key's header does not stand in for the link on this route.
        headed = await anonymous.get(
            f"/api/v1/files/{record['id']}/download", headers=dict(client.headers)
        )
        assert headed.status_code == 401
        assert (await download(record["id"], token)).content == b"x,y\n1,2\n"


async def test_an_expired_link_is_refused(client: httpx.AsyncClient, api: ApiServer, resources: Resources) -> None:
    record = await store(client, "old.csv", b"x\n1\n")
    me = await key_id(client)
    secret = resources.settings.secret_key
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        path = f"/api/v1/files/{record['id']}/download"
        # Correctly signed, so only the expiry refuses it.
        past = link_token(secret, me, uuid.UUID(record["id"]), int(time.time()) - 1)
        refused = await anonymous.get(path, params={"link": past})
        assert refused.status_code == 401
        assert "expired" in refused.json()["detail"]
        future = link_token(secret, me, uuid.UUID(record["id"]), int(time.time()) + 60)
        assert (await anonymous.get(path, params={"link": future})).status_code == 200


async def test_revoking_the_key_kills_its_links(admin_client: httpx.AsyncClient, api: ApiServer) -> None:
    created = (await admin_client.post("/api/v1/admin/keys", json={"name": "link-maker"})).json()
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {created['secret']}"}, timeout=30
    ) as keyed, httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        record = await store(keyed, "r.csv", b"x\n1\n")
        url = await mint(keyed, record["id"])
        assert (await anonymous.get(url)).status_code == 200
        assert (await admin_client.post(f"/api/v1/admin/keys/{created['id']}/revoke")).status_code == 200
        refused = await anonymous.get(url)
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]


async def test_another_owner_gets_no_link_and_no_bytes(
    client: httpx.AsyncClient, other_client: httpx.AsyncClient, api: ApiServer
) -> None:
    mine = await store(client, "mine.csv", b"secret,data\n1,2\n")
    theirs = await store(other_client, "theirs.csv", b"x\n1\n")
    refused = await other_client.post(f"/api/v1/files/{mine['id']}/links")
    assert refused.status_code == 404, refused.text
    assert (await client.post(f"/api/v1/files/{uuid.uuid4()}/links")).status_code == 404
    # Their valid token, put on my file's path, opens nothing.
    token = parse_qs(urlsplit(await mint(other_client, theirs["id"])).query)["link"][0]
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        crossed = await anonymous.get(f"/api/v1/files/{mine['id']}/download", params={"link": token})
        assert crossed.status_code == 403 and b"secret" not in crossed.content
    assert (await client.post("/api/v1/files/not-a-uuid/links")).status_code in (404, 422)
    # Minting needs a key.
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        assert (await anonymous.post(f"/api/v1/files/{mine['id']}/links")).status_code == 401


async def test_a_quarantined_or_deleted_file_is_not_served_by_its_link(
    client: httpx.AsyncClient, api: ApiServer, resources: Resources
) -> None:
    record = await store(client, "flagged.csv", b"x\n1\n")
    url = await mint(client, record["id"])
    # The scanner's verdict, as the scanning worker writes it.
    conn = await asyncpg.connect(resources.settings.sync_database_url)
    try:
        await conn.execute(
            "UPDATE files SET status = 'quarantined', scan_signature = 'Eicar-Test-Signature', scanned_at = now()"
            " WHERE id = $1",
            uuid.UUID(record["id"]),
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        by_link = await anonymous.get(url)
    by_key = await client.get(f"/api/v1/files/{record['id']}/content")
    assert by_link.status_code == by_key.status_code == 409
    assert by_link.json()["detail"] == by_key.json()["detail"]
    assert "quarantined" in by_link.json()["detail"] and b"x\n1" not in by_link.content
    fresh = await client.post(f"/api/v1/files/{record['id']}/links")
    assert fresh.status_code == 409 and "quarantined" in fresh.json()["detail"]

    gone = await store(client, "gone.csv", b"x\n1\n")
    url = await mint(client, gone["id"])
    assert (await client.delete(f"/api/v1/files/{gone['id']}")).status_code == 204
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as anonymous:
        assert (await anonymous.get(url)).status_code == 410
    assert (await client.post(f"/api/v1/files/{gone['id']}/links")).status_code == 410
