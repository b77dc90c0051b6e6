"""nginx, configured from ops/nginx/sluice.conf, in front of API servers of its own."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import psutil
import pytest

from app.resources import Resources
from tests.support import nginx
from tests.support.servers import ApiServer

PROXY_ADDRESS = "127.0.0.2"
"""nginx connects to the APIs from here; only this address is trusted with X-Forwarded-* headers."""
MiB = 1024 * 1024


@pytest.fixture(scope="session")
def nginx_available() -> None:
    if not nginx.available():
        pytest.skip("Debian's nginx is needed for the reverse proxy tests (apt-get install nginx; .ci/run does)")


@pytest.fixture(scope="module")
def proxied_api(resources: Resources, nginx_available: None) -> Iterator[ApiServer]:
    server = ApiServer(resources.settings.replace(forwarded_allow_ips=(PROXY_ADDRESS,)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(proxied_api: ApiServer) -> Iterator[nginx.Nginx]:
    server = nginx.Nginx([f"127.0.0.1:{proxied_api.port}"], bind=PROXY_ADDRESS)
    yield server
    server.stop()


@dataclass
class RssSampler:
    """The resident memory of one process, sampled every 50 ms while a block runs."""

    pid: int
    samples: list[int] = field(default_factory=list)

    @property
    def peak_mib(self) -> float:
        return max(self.samples) / MiB

    @property
    def start_mib(self) -> float:
        return self.samples[0] / MiB


@pytest.fixture
async def rss(proxied_api: ApiServer) -> AsyncIterator[RssSampler]:
    sampler = RssSampler(proxied_api.process.pid)
    process = psutil.Process(sampler.pid)

    async def sample() -> None:
        while True:
            sampler.samples.append(process.memory_info().rss)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(sample())
    await asyncio.sleep(0.06)
    yield sampler
    task.cancel()


class CsvStream:
    """A CSV body of ``size`` bytes made on the fly, hashed as it is sent: nothing big is held."""

    BLOCK = b"".join(f"{i},row-{i:07d},{i * 7 % 1000}.{i % 100:02d}\n".encode() for i in range(40_000))

    def __init__(self, size: int) -> None:
        self.size = size
        self.digest = hashlib.sha256()
        self.started = time.monotonic()

    def pieces(self) -> Iterator[bytes]:
        sent = 0
        header = b"id,name,amount\n"
        while sent < self.size:
            piece = (header + self.BLOCK) if sent == 0 else self.BLOCK
            piece = piece[: self.size - sent]
            sent += len(piece)
            yield piece

    async def body(self) -> AsyncIterator[bytes]:
        for piece in self.pieces():
            self.digest.update(piece)
            yield piece
