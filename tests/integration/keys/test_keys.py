"""Key lifecycle over HTTP and the CLI: revoke and expiry hold at once on every API process,
rotation hands over to a new secret, stream links die with their key, last use is recorded."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from app.resources import Resources
from db.models import ApiKey
from tests.integration.events.support import insert_job, owner_of
from tests.integration.keys.support import client_for, new_key, sluice
from tests.support.servers import ApiServer


async def test_a_revoked_key_is_refused_at_once_on_every_api_process(
    api: ApiServer, second_api: ApiServer, admin_client: httpx.AsyncClient
) -> None:
    created = await admin_client.post("/api/v1/admin/keys", json={"name": "ci-bot"})
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["secret"].startswith("slk_") and record["secret"].startswith(record["prefix"])
    assert (record["state"], record["admin"], record["last_used_at"], record["expires_at"]) == ("active", False, None, None)

    async with client_for(api.url, record["secret"]) as one, client_for(second_api.url, record["secret"]) as two:
        assert (await one.get("/api/v1/files")).status_code == 200
        assert (await two.get("/api/v1/files")).status_code == 200
        revoked = await admin_client.post(f"/api/v1/admin/keys/{record['id']}/revoke")
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["state"] == "revoked" and revoked.json()["revoked_at"]
        for http in (one, two):
            refused = await http.get("/api/v1/files")
            assert refused.status_code == 401
            assert "revoked" in refused.json()["detail"]
    # A repeat changes nothing; an unknown key is 404.
    again = await admin_client.post(f"/api/v1/admin/keys/{record['id']}/revoke")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert (await admin_client.post(f"/api/v1/admin/keys/{uuid.uuid4()}/revoke")).status_code == 404


async def test_an_expired_key_is_refused(api: ApiServer, second_api: ApiServer, resources: Resources) -> None:
    _, past = await new_key(resources, "old", expires_at=datetime.now(UTC) - timedelta(seconds=1))
    key, soon = await new_key(resources, "soon", expires_at=datetime.now(UTC) + timedelta(hours=1))
    for url in (api.url, second_api.url):
        async with client_for(url, past) as http:
            refused = await http.get("/api/v1/me")
            assert refused.status_code == 401 and "expired" in refused.json()["detail"]
        async with client_for(url, soon) as http:
            assert (await http.get("/api/v1/me")).status_code == 200
    # Its expiry passing is enough: nothing needs to revoke it.
    async with resources.sessionmaker() as session:
        row = await session.get(ApiKey, key.id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        await session.commit()
    async with client_for(second_api.url, soon) as http:
        assert (await http.get("/api/v1/files")).status_code == 401


async def test_create_with_a_lifetime_and_the_listing_shows_use(
    api: ApiServer, admin_client: httpx.AsyncClient
) -> None:
    created = (await admin_client.post("/api/v1/admin/keys", json={"name": "temp", "expires": "90d"})).json()
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=89, hours=23) < expires - datetime.now(UTC) <= timedelta(days=90)
    async with client_for(api.url, created["secret"]) as http:
        assert (await http.get("/api/v1/files")).status_code == 200
    listing = await admin_client.get("/api/v1/admin/keys", params={"owner_id": created["owner_id"]})
    assert listing.status_code == 200
    (item,) = listing.json()["items"]
    assert item["id"] == created["id"] and item["last_used_at"] is not None and "secret" not in item
    one = (await admin_client.get(f"/api/v1/admin/keys/{created['id']}")).json()
    assert one["last_used_at"] == item["last_used_at"]

    for body, field in (
        ({"name": "x", "expires": "soon"}, "expires"),
        ({"name": "x", "expires": "0d"}, "expires"),
        ({"name": "x", "expires": "99999w"}, "100 years"),
        ({"name": ""}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ):
        refused = await admin_client.post("/api/v1/admin/keys", json=body)
        assert refused.status_code in (400, 422), (body, refused.text)
        assert field in refused.json()["detail"], (body, refused.text)


async def test_rotate_gives_a_new_secret_and_revokes_the_old_one(
    api: ApiServer, second_api: ApiServer, admin_client: httpx.AsyncClient
) -> None:
    old = (await admin_client.post("/api/v1/admin/keys", json={"name": "deploy", "admin": True, "expires": "30d"})).json()
    rotated = await admin_client.post(f"/api/v1/admin/keys/{old['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["id"] != old["id"] and new["secret"] != old["secret"]
    same = ("owner_id", "name", "admin", "expires_at")
    assert {k: new[k] for k in same} == {k: old[k] for k in same}
    async with client_for(second_api.url, old["secret"]) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    async with client_for(api.url, new["secret"]) as http:
        me = (await http.get("/api/v1/me")).json()
        assert (me["key_id"], me["owner_id"], me["admin"]) == (new["id"], old["owner_id"], True)
    # The old key is revoked; it cannot be rotated again.
    again = await admin_client.post(f"/api/v1/admin/keys/{old['id']}/rotate")
    assert again.status_code == 409 and "revoked" in again.json()["detail"]


async def test_stream_links_die_with_their_key(api: ApiServer, second_api: ApiServer, resources: Resources) -> None:
    key, secret = await new_key(resources, "watcher")
    job = await insert_job(resources, key.owner_id)
    path = f"/api/v1/jobs/{job.id}/events"
    async with client_for(api.url, secret) as http:
        link = (await http.post("/api/v1/events/links", json={"path": path, "ttl_s": 600})).json()["url"]
    async with httpx.AsyncClient(base_url=second_api.url, timeout=10) as browser:
        async with browser.stream("GET", link) as opened:
            assert opened.status_code == 200
        async with resources.sessionmaker() as session:
            row = await session.get(ApiKey, key.id)
            assert row is not None
            row.revoked_at = datetime.now(UTC)
            await session.commit()
        for url in (api.url, second_api.url):
            refused = await browser.get(url + link)
            assert refused.status_code == 401 and "revoked" in refused.json()["detail"]


async def test_other_keys_cannot_manage_keys(client: httpx.AsyncClient, key: str, resources: Resources) -> None:
    mine = await owner_of(resources, key)
    async with resources.sessionmaker() as session:
        key_id = await session.scalar(select(ApiKey.id).where(ApiKey.owner_id == mine))
    for method, path in (
        ("GET", "/api/v1/admin/keys"),
        ("POST", "/api/v1/admin/keys"),
        ("POST", f"/api/v1/admin/keys/{key_id}/revoke"),
        ("POST", f"/api/v1/admin/keys/{key_id}/rotate"),
    ):
        refused = await client.request(method, path, json={"name": "sneaky", "admin": True})
        assert refused.status_code == 403, (method, path, refused.text)
    assert (await client.get("/api/v1/me")).status_code == 200


async def test_the_sluice_cli_creates_lists_rotates_and_revokes(api: ApiServer, resources: Resources) -> None:
    settings = resources.settings
    created = sluice(settings, "keys", "create", "cli-made", "--expires", "7d")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    key_id = re.search(r"created key ([0-9a-f-]{36})", created.stderr).group(1)  # type: ignore[union-attr]
    async with client_for(api.url, secret) as http:
        me = (await http.get("/api/v1/me")).json()
    assert me["key_id"] == key_id and me["name"] == "cli-made" and me["expires_at"] is not None

    listed = sluice(settings, "keys", "list", "--owner", me["owner_id"])
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()
    assert key_id in line and "active" in line and "cli-made" in line and "last used 20" in line

    rotated = sluice(settings, "keys", "rotate", key_id)
    assert rotated.returncode == 0, rotated.stderr
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret != secret
    async with client_for(api.url, secret) as old, client_for(api.url, new_secret) as new:
        assert (await old.get("/api/v1/me")).status_code == 401
        new_me = (await new.get("/api/v1/me")).json()
    assert new_me["owner_id"] == me["owner_id"] and new_me["name"] == "cli-made"
    new_id = new_me["key_id"]

    revoked = sluice(settings, "keys", "revoke", new_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    async with client_for(api.url, new_secret) as http:
        assert (await http.get("/api/v1/me")).status_code == 401
    states = sluice(settings, "keys", "list", "--owner", me["owner_id"]).stdout
    assert states.count("revoked") == 2 and "active" not in states

    assert sluice(settings, "keys", "rotate", new_id).returncode == 1
    bad = sluice(settings, "keys", "create", "x", "--expires", "forever")
    assert bad.returncode == 1 and "90d" in bad.stderr
    missing = sluice(settings, "keys", "revoke", str(uuid.uuid4()))
    assert missing.returncode == 1 and "no key" in missing.stderr
