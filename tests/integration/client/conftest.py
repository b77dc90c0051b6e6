from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.servers import REPO, ApiServer, free_port


class SlowProxy:
    """A TCP proxy that forwards what clients send at ``rate`` bytes/s, so an upload lasts long
    enough to be interrupted at a chosen point."""

    def __init__(self, target_url: str, rate: int) -> None:
        host_port = target_url.split("://", 1)[1]
        self.host, port = host_port.rsplit(":", 1)
        self.target_port = int(port)
        self.rate = rate
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, throttle: bool) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                    if throttle:
                        await asyncio.sleep(len(data) / self.rate)
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


@pytest.fixture
async def slow_api(api: ApiServer) -> AsyncIterator[SlowProxy]:
    proxy = SlowProxy(api.url, rate=10 * 1024 * 1024)
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
