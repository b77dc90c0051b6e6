"""The upload client behind ``sluice upload``: single-shot for small files, resumable chunked
sessions for large ones, retries with exponential backoff and jitter on transient failures."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from anyio import to_thread
from rich.console import Console
from rich.progress import Progress, TaskID

from app.client.resume import ResumeStore

MiB = 1024 * 1024
RETRIES = 3
BACKOFF_BASE = 0.5
"""Seconds before the first retry; doubled for each further one, with up to half of it as jitter."""
READ_SIZE = MiB


class UploadFailed(Exception):
    def __init__(self, detail: str, status_code: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status_code = status_code


@dataclass(slots=True)
class Outcome:
    """What happened to one file, for the summary table and the exit code."""

    path: Path
    size: int
    mode: str
    status: str = "failed"
    file_id: str | None = None
    job_id: str | None = None
    detail: str | None = None
    chunks_sent: int = 0
    chunks_skipped: int = 0
    seconds: float = 0.0

    @property
    def stored(self) -> bool:
        return self.status == "stored"


@dataclass(frozen=True, slots=True)
class Options:
    chunk_size: int | None
    parallel: int
    process: bool
    threshold: int
    verify: bool


def backoff(attempt: int) -> float:
    delay = BACKOFF_BASE * 2**attempt
    return delay / 2 + random.uniform(0, delay / 2)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail") or response.text)
    except ValueError:
        return response.text or response.reason_phrase


class Uploader:
    def __init__(
        self, http: httpx.AsyncClient, options: Options, resume: ResumeStore, progress: Progress, console: Console
    ) -> None:
        self.http = http
        self.options = options
        self.resume = resume
        self.progress = progress
        self.console = console

    async def upload(self, path: Path) -> Outcome:
        started = time.monotonic()
        stat = path.stat()
        mode = "chunked" if stat.st_size > self.options.threshold else "single"
        outcome = Outcome(path=path, size=stat.st_size, mode=mode)
        task = self.progress.add_task(path.name, total=stat.st_size)
        try:
            if mode == "chunked":
                await self._chunked(path, stat, task, outcome)
            else:
                await self._single(path, task, outcome)
        except UploadFailed as exc:
            outcome.status, outcome.detail = "failed", exc.detail
        except httpx.TransportError as exc:
            outcome.status = "failed"
            outcome.detail = f"the server could not be reached after {RETRIES} retries: {exc or type(exc).__name__}"
        outcome.seconds = time.monotonic() - started
        self.progress.update(task, visible=False)
        return outcome

    async def _single(self, path: Path, task: TaskID, outcome: Outcome) -> None:
        digest = await to_thread.run_sync(_file_sha256, path)

        def body() -> AsyncIterator[bytes]:
            self.progress.update(task, completed=0)
            return self._stream(path, task)

        response = await self._request(
            "PUT",
            f"/api/v1/files/{quote(path.name, safe='')}",
            content=body,
            params={"process": str(self.options.process).lower()},
            headers={"X-Content-SHA256": digest, "Content-Length": str(outcome.size)},
        )
        if response.status_code != 201:
            raise UploadFailed(_detail(response), response.status_code)
        record = response.json()
        outcome.status, outcome.file_id, outcome.job_id = "stored", record["id"], record.get("job_id")

    async def _chunked(self, path: Path, stat: os.stat_result, task: TaskID, outcome: Outcome) -> None:
        session = await self._resumed(path, stat)
        if session is None:
            session = await self._start(path, stat)
            self.resume.save(path, stat, session["id"])
        elif session["state"] == "completed":
            outcome.chunks_skipped = session["total_chunks"]
            await self._finish(path, stat, outcome, await self._complete(session["id"]))
            return
        missing: list[int] = session["missing_chunks"]
        outcome.chunks_skipped = session["total_chunks"] - len(missing)
        self.progress.update(task, completed=session["bytes_received"])
        if outcome.chunks_skipped:
            self.console.print(
                f"{path.name}: resuming upload {session['id']}: skipped {outcome.chunks_skipped} of "
                f"{session['total_chunks']} chunks already on the server"
            )
        await self._send_chunks(path, session, missing, task, outcome)
        response = await self._complete(session["id"])
        if response.status_code == 409 and "missing_chunks" in response.json():
            # Chunks recorded as missing after all (e.g. a repeat lost a race): send them once more.
            await self._send_chunks(path, session, response.json()["missing_chunks"], task, outcome)
            response = await self._complete(session["id"])
        await self._finish(path, stat, outcome, response)

    async def _finish(self, path: Path, stat: os.stat_result, outcome: Outcome, response: httpx.Response) -> None:
        if response.status_code >= 500 or (response.status_code == 409 and "missing_chunks" in response.json()):
            raise UploadFailed(_detail(response) + "; run the command again to resume", response.status_code)
        self.resume.forget(path, stat)
        if response.status_code != 200:
            raise UploadFailed(_detail(response), response.status_code)
        record = response.json()
        outcome.status, outcome.file_id, outcome.job_id = "stored", record["id"], record.get("job_id")

    async def _resumed(self, path: Path, stat: os.stat_result) -> dict[str, Any] | None:
        """The server's view of a session this file started earlier, if it can still be used."""
        saved = self.resume.load(path, stat)
        if saved is None:
            return None
        response = await self._request("GET", f"/api/v1/uploads/{saved.upload_id}")
        if response.status_code == 200 and response.json()["state"] in ("receiving", "completed"):
            return response.json()  # type: ignore[no-any-return]
        if response.status_code < 500:
            self.console.print(f"{path.name}: the earlier upload {saved.upload_id} cannot be resumed; starting again")
            self.resume.forget(path, stat)
            return None
        raise UploadFailed(_detail(response) + "; run the command again to resume", response.status_code)

    async def _start(self, path: Path, stat: os.stat_result) -> dict[str, Any]:
        body: dict[str, Any] = {"filename": path.name, "size": stat.st_size, "process": self.options.process}
        if self.options.chunk_size is not None:
            body["chunk_size"] = self.options.chunk_size
        if self.options.verify:
            body["sha256"] = await to_thread.run_sync(_file_sha256, path)
        response = await self._request("POST", "/api/v1/uploads", json=body)
        if response.status_code != 201:
            raise UploadFailed(_detail(response), response.status_code)
        return response.json()  # type: ignore[no-any-return]

    async def _complete(self, upload_id: str) -> httpx.Response:
        return await self._request("POST", f"/api/v1/uploads/{upload_id}/complete")

    async def _send_chunks(
        self, path: Path, session: dict[str, Any], indexes: list[int], task: TaskID, outcome: Outcome
    ) -> None:
        """Send ``indexes`` with at most ``parallel`` chunks in flight; the first failure stops the rest."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in indexes:
            queue.put_nowait(index)
        chunk_size, size = session["chunk_size"], session["size"]

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                offset = index * chunk_size
                data = await to_thread.run_sync(_read_at, path, offset, min(chunk_size, size - offset))
                digest = await to_thread.run_sync(lambda: hashlib.sha256(data).hexdigest())
                response = await self._request(
                    "PUT",
                    f"/api/v1/uploads/{session['id']}/chunks/{index}",
                    content=data,
                    headers={"X-Chunk-SHA256": digest},
                )
                if response.status_code != 200:
                    raise UploadFailed(f"chunk {index}: {_detail(response)}", response.status_code)
                outcome.chunks_sent += 1
                self.progress.advance(task, len(data))

        workers = [asyncio.create_task(worker()) for _ in range(max(1, self.options.parallel))]
        try:
            await asyncio.gather(*workers)
        finally:
            for running in workers:
                running.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _stream(self, path: Path, task: TaskID) -> AsyncIterator[bytes]:
        with path.open("rb") as source:
            while data := await to_thread.run_sync(source.read, READ_SIZE):
                self.progress.advance(task, len(data))
                yield data

    async def _request(
        self,
        method: str,
        url: str,
        *,
        content: bytes | Callable[[], AsyncIterator[bytes]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request, retried on connection errors and 5xx answers with backoff and jitter."""
        attempt = 0
        while True:
            body = content() if callable(content) else content
            try:
                response = await self.http.request(method, url, content=body, **kwargs)
            except httpx.TransportError:
                if attempt == RETRIES:
                    raise
            else:
                if response.status_code < 500 or attempt == RETRIES:
                    return response
            await asyncio.sleep(backoff(attempt))
            attempt += 1


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while data := source.read(8 * MiB):
            digest.update(data)
    return digest.hexdigest()


def _read_at(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as source:
        source.seek(offset)
        return source.read(length)
