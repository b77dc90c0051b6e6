"""The periodic upkeep of chunked uploads, called directly: expiry and orphan cleanup."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update

from app.resources import Resources
from db.models import UploadSession
from tests.integration.uploads.support import CHUNK, csv_bytes, incomplete_keys, send, session_key, start
from workers.contracts import upload_channel
from workers.maintenance import abort_orphans, expire_sessions

DATA = csv_bytes(CHUNK + 100)


async def _lapse(resources: Resources, upload_id: str) -> None:
    async with resources.sessionmaker() as db:
        await db.execute(
            update(UploadSession)
            .where(UploadSession.id == uuid.UUID(upload_id))
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
        await db.commit()


async def test_idle_sessions_expire_and_release_storage(client: httpx.AsyncClient, resources: Resources) -> None:
    idle = await start(client, DATA, process=False)
    alive = await start(client, DATA, process=False)
    for session in (idle, alive):
        assert (await send(client, session["id"], DATA, 0)).status_code == 200
    idle_key, alive_key = await session_key(resources, idle["id"]), await session_key(resources, alive["id"])
    await _lapse(resources, idle["id"])

    # Lapsed but not yet swept: the API already refuses it as expired.
    assert (await client.get(f"/api/v1/uploads/{idle['id']}")).json()["state"] == "expired"
    assert (await send(client, idle["id"], DATA, 1)).status_code == 410
    assert (await client.post(f"/api/v1/uploads/{idle['id']}/complete")).status_code == 410

    pubsub = resources.redis.pubsub()
    await pubsub.subscribe(upload_channel(resources.settings.redis_prefix, idle["id"]))
    try:
        count = await expire_sessions(resources.sessionmaker, resources.store, resources.settings, redis=resources.redis)
        async with asyncio.timeout(5):
            while (message := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is None:
                pass
    finally:
        await pubsub.aclose()
    assert count >= 1
    assert b'"type":"expired"' in message["data"]

    state = (await client.get(f"/api/v1/uploads/{idle['id']}")).json()
    assert state["state"] == "expired" and "expired" in state["error"]
    assert incomplete_keys(resources, idle_key) == []
    assert (await send(client, idle["id"], DATA, 1)).status_code == 410

    assert (await client.get(f"/api/v1/uploads/{alive['id']}")).json()["state"] == "receiving"
    assert incomplete_keys(resources, alive_key) == [alive_key]
    assert await expire_sessions(resources.sessionmaker, resources.store, resources.settings) == 0
    await client.delete(f"/api/v1/uploads/{alive['id']}")


async def test_orphaned_multipart_uploads_are_aborted(client: httpx.AsyncClient, resources: Resources) -> None:
    store = resources.store
    orphan_key = f"files/{uuid.uuid4()}/{uuid.uuid4()}"
    orphan = await asyncio.to_thread(store.create, orphan_key, "text/csv")
    await asyncio.to_thread(store.put_part, orphan_key, orphan, 1, DATA[:CHUNK])
    live = await start(client, DATA, process=False)
    await send(client, live["id"], DATA, 0)
    live_key = await session_key(resources, live["id"])

    # Too young to be called an orphan: its session row may still be on its way. (moto reports a
    # fixed initiation time, so "now" is set relative to what the store says.)
    (listed,) = list(store.list_incomplete(orphan_key))
    assert listed.initiated is not None
    young = listed.initiated + timedelta(minutes=5)
    assert await abort_orphans(resources.sessionmaker, store, resources.settings, now=young) == 0
    assert incomplete_keys(resources, orphan_key) == [orphan_key]

    aborted = await abort_orphans(resources.sessionmaker, store, resources.settings, grace=timedelta(0))
    assert aborted >= 1
    assert incomplete_keys(resources, orphan_key) == []
    assert incomplete_keys(resources, live_key) == [live_key]

    await send(client, live["id"], DATA, 1)
    done = await client.post(f"/api/v1/uploads/{live['id']}/complete")
    assert done.status_code == 200, done.text


async def test_chunks_extend_a_session_but_not_past_two_ttls(client: httpx.AsyncClient, resources: Resources) -> None:
    session = await start(client, DATA, process=False)
    await send(client, session["id"], DATA, 0)
    first = datetime.fromisoformat((await client.get(f"/api/v1/uploads/{session['id']}")).json()["expires_at"])
    assert first > datetime.now(UTC) + timedelta(hours=23)

    started = datetime.now(UTC) - timedelta(hours=47)
    async with resources.sessionmaker() as db:
        await db.execute(update(UploadSession).where(UploadSession.id == uuid.UUID(session["id"])).values(created_at=started))
        await db.commit()
    await send(client, session["id"], DATA, 1)
    capped = datetime.fromisoformat((await client.get(f"/api/v1/uploads/{session['id']}")).json()["expires_at"])
    assert abs(capped - (started + timedelta(hours=48))) < timedelta(seconds=5)
    await client.delete(f"/api/v1/uploads/{session['id']}")
