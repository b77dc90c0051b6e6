"""Streams bytes of unknown length into one object as S3 multipart parts, a few in flight."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Hashable

from anyio import to_thread

from app.budget import PartBuffer, UploadMemory
from app.files.detect import Tail
from db.storage import ObjectStore, PartInfo


class TooLarge(Exception):
    """More bytes arrived than the size limit allows."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the file is larger than the limit of {limit} bytes")
        self.limit = limit


class ChecksumMismatch(Exception):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"SHA-256 of the received bytes is {actual}, not the {expected} that was announced")
        self.expected = expected
        self.actual = actual


class PartWriter:
    """Buffers at most one part while ``parallel`` parts upload; the object appears only on ``finish``.

    A body that fits in one part is sent with a single PUT; anything larger becomes a multipart
    upload, which ``abort`` (or a failed ``finish``) releases so nothing half-written remains.
    Part buffers are paid for from ``memory`` (for ``owner``) as bytes arrive and given back once
    the part is in the store.
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        content_type: str,
        *,
        part_size: int,
        parallel: int,
        limit: int,
        memory: UploadMemory,
        owner: Hashable,
        keep_tail: int = 0,
    ):
        self._store = store
        self._key = key
        self._content_type = content_type
        self._part_size = part_size
        self._limit = limit
        self._slots = asyncio.Semaphore(parallel)
        self._memory = memory
        self._owner = owner
        self._part: PartBuffer | None = None
        self._hash = hashlib.sha256()
        self._upload_id: str | None = None
        self._tasks: list[asyncio.Task[PartInfo]] = []
        self.size = 0
        self.tail = Tail(keep_tail) if keep_tail else None
        """The body's last ``keep_tail`` bytes, for a verdict on the type that needs its end (a ZIP's)."""

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.size > self._limit:
            raise TooLarge(self._limit)
        self._hash.update(data)
        if self.tail is not None:
            self.tail.feed(data)
        rest = memoryview(data)
        while rest:
            if self._part is None:
                self._part = PartBuffer(self._memory.claim(self._owner, self._part_size))
            taken = await self._part.fill(rest)
            rest = rest[taken:]
            if self._part.full:
                part, self._part = self._part, None
                await self._send(part)

    async def finish(self, expected_sha256: str | None = None) -> str:
        """Flush, verify and publish the object; returns the SHA-256 hex of its bytes."""
        digest = self._hash.hexdigest()
        if expected_sha256 is not None and not hmac.compare_digest(digest, expected_sha256.lower()):
            await self.abort()
            raise ChecksumMismatch(expected_sha256, digest)
        last, self._part = self._part, None
        if self._upload_id is None:
            try:
                with last.view() if last is not None else memoryview(b"") as data:
                    await to_thread.run_sync(self._store.put, self._key, data, self._content_type)
            finally:
                if last is not None:
                    last.close()
            return digest
        if last is not None:
            await self._send(last)
        try:
            parts = await asyncio.gather(*self._tasks)
            await to_thread.run_sync(self._store.complete, self._key, self._upload_id, list(parts))
        except BaseException:
            await self.abort()
            raise
        return digest

    @property
    def upload_id(self) -> str | None:
        """The multipart upload the parts go to, from the first full part until it is completed or aborted."""
        return self._upload_id

    async def abort(self) -> None:
        """Stop in-flight parts and release the multipart upload; safe to call more than once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._part is not None:
            part, self._part = self._part, None
            part.close()
        if self._upload_id is not None:
            # Forgotten only once released: after a failed abort ``upload_id`` still names it.
            await asyncio.shield(to_thread.run_sync(self._store.abort, self._key, self._upload_id))
            self._upload_id = None

    async def _send(self, part: PartBuffer) -> None:
        try:
            if self._upload_id is None:
                self._upload_id = await to_thread.run_sync(self._store.create, self._key, self._content_type)
            failed = next((t for t in self._tasks if t.done() and t.exception()), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]
            await self._slots.acquire()
        except BaseException:
            part.close()
            raise
        number = len(self._tasks) + 1
        self._tasks.append(asyncio.create_task(self._put(number, part)))

    async def _put(self, number: int, part: PartBuffer) -> PartInfo:
        try:
            assert self._upload_id is not None
            with part.view() as data:
                return await to_thread.run_sync(self._store.put_part, self._key, self._upload_id, number, data)
        finally:
            part.close()
            self._slots.release()
