"""A stack whose API and worker connect as the non-superuser roles ``sluice migrate`` creates."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest

from app.auth import create_api_key
from app.resources import Resources
from db.engine import make_engine, make_sessionmaker
from db.migrate import API_ROLE, WORKER_ROLE, grant_roles, upgrade
from tests.conftest import ADMIN_DSN
from tests.integration.jobs.conftest import Worker, worker_settings
from tests.support.servers import ApiServer


@dataclass
class RoleStack:
    owner_url: str
    """The database owner's URL (what ``sluice migrate`` runs as)."""
    api_dsn: str
    worker_dsn: str
    api: ApiServer
    worker: Worker
    key: str

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.AsyncClient(base_url=self.api.url, headers=headers, timeout=60)

    async def new_key(self) -> str:
        engine = make_engine(self.owner_url, pool_size=1)
        try:
            async with make_sessionmaker(engine)() as session:
                _, secret = await create_api_key(session, f"k-{uuid.uuid4().hex[:6]}")
                await session.commit()
        finally:
            await engine.dispose()
        return secret


def _url(base: str, user: str, password: str, database: str) -> str:
    host = base.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{user}:{password}@{host}/{database}"


@pytest.fixture(scope="session")
async def role_stack(resources: Resources) -> AsyncIterator[RoleStack]:
    """A database of its own: its dataset tables belong to sluice_worker, unlike the shared test database's."""
    name = f"sluice_test_roles_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
    owner_url = base.rsplit("/", 1)[0] + f"/{name}"
    api_password, worker_password = secrets.token_hex(12), secrets.token_hex(12)
    settings = worker_settings(resources.settings, f"{resources.settings.redis_prefix}-roles").replace(
        database_url=owner_url
    )
    try:
        await asyncio.to_thread(upgrade, owner_url, dataset_schema=settings.dataset_schema)
        await asyncio.to_thread(
            grant_roles, owner_url, settings.dataset_schema, api_password=api_password, worker_password=worker_password
        )
        api_url = _url(owner_url, API_ROLE, api_password, name)
        worker_url = _url(owner_url, WORKER_ROLE, worker_password, name)
        with contextlib.ExitStack() as started:
            api = ApiServer(settings.replace(database_url=api_url))
            started.callback(api.stop)
            worker = Worker(settings.replace(database_url=worker_url))
            started.callback(worker.stop)
            dsn = {"api": api_url.replace("+asyncpg", ""), "worker": worker_url.replace("+asyncpg", "")}
            stack = RoleStack(owner_url, dsn["api"], dsn["worker"], api, worker, "")
            stack.key = await stack.new_key()
            yield stack
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def role_client(role_stack: RoleStack) -> AsyncIterator[httpx.AsyncClient]:
    async with role_stack.client() as http:
        yield http
