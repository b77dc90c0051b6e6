"""Helpers for the key and quota tests: keys made directly, clients, and the real ``sluice`` CLI."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import httpx

from app.auth import create_api_key
from app.resources import Resources
from db.models import ApiKey
from db.settings import Settings
from tests.support.servers import REPO, settings_env


async def new_key(resources: Resources, name: str, *, admin: bool = False, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    async with resources.sessionmaker() as session:
        key, secret = await create_api_key(session, name, admin=admin, expires_at=expires_at)
        await session.commit()
    return key, secret


def client_for(url: str, secret: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60)


def sluice(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``sluice`` command as an operator runs it, with the test's settings in its environment."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=settings_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
