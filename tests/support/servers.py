"""Real processes the tests talk to: an S3 endpoint, API servers, and a TCP fault proxy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from db.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A ``minio`` binary from PATH if there is one, else moto's S3 server; yields host:port."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="sluice-s3-")
    if shutil.which("minio"):
        env = os.environ | {"MINIO_ROOT_USER": "sluice-dev", "MINIO_ROOT_PASSWORD": "sluice-dev-secret"}
        argv = ["minio", "server", data, "--address", f"127.0.0.1:{port}", "--quiet"]
        health = f"http://127.0.0.1:{port}/minio/health/live"
    else:
        env = dict(os.environ)
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
        health = f"http://127.0.0.1:{port}/"
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(health, process=process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(data, ignore_errors=True)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process read exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    for name in settings.__dataclass_fields__:
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"SLUICE_{name.upper()}"] = str(value)
    return env


class ApiServer:
    """``sluice serve`` in a child process, as a user runs it; with ``log``, its output goes to a file
    that ``output()`` reads."""

    def __init__(
        self, settings: Settings, *, workers: int = 1, env: dict[str, str] | None = None, log: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix="sluice-api-", suffix=".log")[1]) if log else None
        argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)]
        if workers != 1:
            argv += ["--workers", str(workers)]
        with contextlib.ExitStack() as files:
            out = files.enter_context(self.log.open("wb")) if self.log is not None else None
            self.process = subprocess.Popen(
                argv, env=settings_env(settings) | (env or {}), cwd=REPO, stdout=out, stderr=subprocess.STDOUT if out else None
            )
        try:
            wait_for(f"{self.url}/health", process=self.process)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log is not None else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.log is not None:
            self.log.unlink(missing_ok=True)


class FaultProxy:
    """A TCP proxy in front of a server that cuts any connection once its client has sent
    ``cut_after`` bytes: large transfers fail mid-body while small requests still pass. It also
    counts what clients send upstream (``sent``) and can cap that rate (``throttle``)."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit(":", 1)
        self.target_port = int(port)
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.endpoint}"
        self.cut_after: int | None = None
        self.sent = 0
        self.rate: float | None = None
        """Bytes per second, summed over every connection; None = as fast as it goes."""
        self._paced_since = time.monotonic()
        self._paced_bytes = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    def throttle(self, rate: float | None) -> None:
        self.rate = rate
        self._paced_since, self._paced_bytes = time.monotonic(), 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()

    async def _pace(self, size: int) -> None:
        self._paced_bytes += size
        if self.rate:
            ahead = self._paced_bytes / self.rate - (time.monotonic() - self._paced_since)
            if ahead > 0:
                await asyncio.sleep(ahead)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, count: bool) -> None:
            forwarded = 0
            try:
                while data := await src.read(65536):
                    if count:
                        forwarded += len(data)
                        if self.cut_after is not None and forwarded > self.cut_after:
                            break
                        self.sent += len(data)
                        await self._pace(len(data))
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()
                up_writer.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}
