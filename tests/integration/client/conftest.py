from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import REPO, ApiServer, FaultProxy


@pytest.fixture
async def slow_api(api: ApiServer) -> AsyncIterator[FaultProxy]:
    """The API behind a proxy that forwards uploads at 10 MiB/s, so one can be interrupted at a chosen point."""
    proxy = FaultProxy(api.url.removeprefix("http://"))
    proxy.throttle(10 * 1024 * 1024)
    await proxy.start()
    yield proxy
    await proxy.stop()


@dataclass
class Cli:
    """Runs ``sluice upload`` as a user would, with its own cache directory."""

    cache: Path
    key: str

    def env(self, url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        return env | {"SLUICE_URL": url, "SLUICE_KEY": self.key, "XDG_CACHE_HOME": str(self.cache), "COLUMNS": "200"}

    async def start(self, url: str, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "app.cli", "upload", *args,
            cwd=REPO, env=self.env(url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )

    async def run(self, url: str, *args: str) -> tuple[int, str]:
        process = await self.start(url, *args)
        out, _ = await asyncio.wait_for(process.communicate(), 120)
        return process.returncode or 0, out.decode()

    def state_files(self) -> list[Path]:
        return sorted((self.cache / "sluice" / "uploads").glob("*.json"))


@pytest.fixture
def cli(tmp_path: Path, key: str) -> Cli:
    return Cli(cache=tmp_path / "cache", key=key)
