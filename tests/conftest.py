"""Fixtures over the real services: a fresh database, bucket and Redis prefix per test run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from app.auth import create_api_key
from app.resources import Resources
from db.migrate import upgrade
from db.settings import Settings
from tests.support.servers import ApiServer, s3_server

ADMIN_DSN = os.environ.get("SLUICE_TEST_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    configured = os.environ.get("SLUICE_TEST_S3_ENDPOINT")
    if configured:
        yield configured
        return
    with s3_server() as endpoint:
        yield endpoint


@contextlib.asynccontextmanager
async def fresh_database(name: str) -> AsyncIterator[str]:
    """A new database migrated to head, dropped afterwards; yields its URL."""
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    url = f"{base}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    async with fresh_database(f"sluice_test_{RUN_ID}") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, s3_endpoint: str) -> Settings:
    return Settings.from_env(
        database_url=database_url,
        redis_url=os.environ.get("SLUICE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        redis_prefix=f"sluice-test-{RUN_ID}",
        s3_endpoint=s3_endpoint,
        s3_access_key="sluice-dev",
        s3_secret_key="sluice-dev-secret",
        s3_bucket=f"sluice-test-{RUN_ID}",
        s3_secure=False,
        part_size=5 * 1024 * 1024,
        # Dozens of API processes share one PostgreSQL during a run: each keeps few connections.
        db_pool_size=2,
        secret_key=f"sluice-test-secret-{RUN_ID}-{uuid.uuid4().hex}",
        log_level="WARNING",
    )


@pytest.fixture(scope="session")
async def resources(settings: Settings) -> AsyncIterator[Resources]:
    res = Resources.from_settings(settings)
    res.store.ensure_bucket()
    try:
        yield res
    finally:
        keys = [key async for key in res.redis.scan_iter(match=f"{settings.redis_prefix}*")]
        if keys:
            await res.redis.delete(*keys)
        await res.aclose()


@pytest.fixture(scope="session")
def api(resources: Resources) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings)
    yield server
    server.stop()


async def new_key(resources: Resources, name: str, *, admin: bool = False) -> str:
    async with resources.sessionmaker() as session:
        _, secret = await create_api_key(session, name, admin=admin)
        await session.commit()
    return secret


@pytest.fixture
async def key(resources: Resources) -> str:
    return await new_key(resources, "owner-a")


@pytest.fixture
async def other_key(resources: Resources) -> str:
    return await new_key(resources, "owner-b")


@pytest.fixture
async def client(api: ApiServer, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:
        yield http


@pytest.fixture
async def other_client(api: ApiServer, other_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {other_key}"}, timeout=120
    ) as http:
        yield http


@pytest.fixture
async def admin_client(api: ApiServer, resources: Resources) -> AsyncIterator[httpx.AsyncClient]:
    secret = await new_key(resources, "admin", admin=True)
    async with httpx.AsyncClient(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}, timeout=120) as http:
        yield http


@pytest.fixture
def redis(resources: Resources) -> Redis:
    return resources.redis
