"""Malware scanning: a small clamd client (INSTREAM) and the stage between storing a file and serving
or processing it.

A stored file waits in ``scanning`` until clamd gives a verdict: clean files become ``stored`` and
their pending jobs are sent to the workers; infected ones become ``quarantined`` with the signature,
and their jobs fail saying so. While the scanner (or the store) cannot be reached, the message is
retried with backoff and the file keeps waiting; it is never processed unscanned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

import urllib3.exceptions
from dramatiq.errors import Retry

from db.storage import ObjectMissing, StorageError
from workers.contracts import JobEvent, job_channel, process_file_message, scan_file_message
from workers.metrics import record_scan
from workers.middleware import Clients
from workers.progress import publish

log = logging.getLogger("sluice.scanning")

CHUNK = 1024 * 1024
"""Bytes per INSTREAM chunk (and per read from the store)."""
SEGMENT = 1024 * 1024 * 1024
"""Most bytes sent in one INSTREAM session. clamd scans at most 2 GiB - 1 of one stream (and skips a
larger one entirely, as too big), so a bigger object is scanned as several sessions ..."""
OVERLAP = 1024 * 1024
"""... that overlap by this much, so a signature across a segment boundary is still seen whole."""
CONNECT_TIMEOUT = 10.0
SEND_TIMEOUT = 120.0
"""Seconds one chunk may take to reach clamd (it reads while it receives)."""
VERDICT_TIMEOUT = 1800.0
"""Seconds clamd may take to scan a segment after its last byte (a big file, a full signature set)."""
SWEEP_AFTER = timedelta(minutes=5)
"""A file left ``scanning`` this long untouched has no scan message alive (lost, never sent, or out of
retries): the sweep sends it another. A live message touches the file on every failed attempt."""
LOCK_CLASS = 0x5CA1
"""First key of the advisory lock a scan holds on its file (the two-key form: never a job's lock)."""


class ScannerUnavailable(Exception):
    """clamd could not be reached, or the connection broke: worth another attempt later."""


class ScannerRefused(Exception):
    """clamd answered with an error (e.g. the stream passed its StreamMaxLength)."""


class _Broken(Exception):
    """Sending to clamd failed; its reply, if it sent one, says why."""


def parse_address(url: str) -> tuple[str, int] | str:
    """``clamd://host:port`` → (host, port); ``clamd:///path/to/socket`` → the socket path."""
    rest = url.removeprefix("clamd://")
    if rest == url or not rest:
        raise ValueError(f"{url!r} is not a clamd address; write clamd://host:3310 or clamd:///path/to/clamd.sock")
    if rest.startswith("/"):
        return rest
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{url!r} has no host:port; write clamd://host:3310 or clamd:///path/to/clamd.sock")
    return host.strip("[]"), int(port)


class Clamd:
    """clamd's ``INSTREAM`` over TCP or a unix socket (null-terminated commands, length-prefixed chunks)."""

    def __init__(self, url: str, *, segment: int = SEGMENT, overlap: int = OVERLAP) -> None:
        if not 0 < overlap < segment:
            raise ValueError("the overlap of scan segments must be shorter than a segment")
        self.address = parse_address(url)
        self.segment = segment
        self.overlap = overlap

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if isinstance(self.address, str):
                opening = asyncio.open_unix_connection(self.address)
            else:
                opening = asyncio.open_connection(*self.address)
            return await asyncio.wait_for(opening, CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise ScannerUnavailable(f"cannot connect to clamd at {self._where()}: {_text(exc)}") from exc

    def _where(self) -> str:
        return self.address if isinstance(self.address, str) else f"{self.address[0]}:{self.address[1]}"

    async def scan(self, read: Callable[[int], Awaitable[bytes]]) -> str | None:
        """Scan the bytes ``read(n)`` returns until it returns ``b""``; the signature found, or ``None``."""
        carry = b""
        while True:
            found, carry, ended = await self._segment(read, carry)
            if found is not None or ended:
                return found

    async def _segment(self, read: Callable[[int], Awaitable[bytes]], carry: bytes) -> tuple[str | None, bytes, bool]:
        """One INSTREAM session of at most ``segment`` bytes, starting with the last one's overlap."""
        reader, writer = await self._connect()
        # Listening from the start: clamd answers a stream past its StreamMaxLength at once and closes,
        # and once the connection is reset a read begun afterwards no longer sees that answer.
        replied = asyncio.ensure_future(reader.readuntil(b"\0"))
        try:
            sent, tail, ended = 0, carry, False
            try:
                await self._send(writer, b"zINSTREAM\0")
                if carry:
                    await self._send(writer, struct.pack(">I", len(carry)), carry)
                    sent = len(carry)
                while sent < self.segment and not replied.done():
                    data = await read(min(CHUNK, self.segment - sent))
                    if not data:
                        ended = True
                        break
                    await self._send(writer, struct.pack(">I", len(data)), data)
                    sent += len(data)
                    if sent > self.segment - self.overlap - CHUNK:
                        tail = (tail + data)[-self.overlap :]
                if replied.done():
                    raise _Broken("clamd answered before the end of the stream")
                await self._send(writer, b"\0\0\0\0")
            except _Broken as exc:
                reply = await _reply(replied, CONNECT_TIMEOUT)
                if reply:
                    raise ScannerRefused(_explain(reply)) from exc
                raise ScannerUnavailable(f"the connection to clamd at {self._where()} broke: {exc}") from exc
            reply = await _reply(replied, VERDICT_TIMEOUT)
        finally:
            replied.cancel()
            writer.close()
        if reply is None:
            raise ScannerUnavailable(f"clamd at {self._where()} closed the connection without a verdict")
        verdict = reply.removeprefix("stream:").strip()
        if verdict == "OK":
            return None, tail, ended
        if verdict.endswith(" FOUND"):
            return verdict.removesuffix(" FOUND").strip(), tail, ended
        raise ScannerRefused(_explain(reply))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, *pieces: bytes) -> None:
        try:
            for piece in pieces:
                writer.write(piece)
            await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise _Broken(_text(exc)) from exc


async def _reply(replied: asyncio.Future[bytes], timeout: float) -> str | None:
    """clamd's null-terminated answer, or ``None`` when it closed (or went silent) without one."""
    try:
        raw = await asyncio.wait_for(asyncio.shield(replied), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    return raw.rstrip(b"\0").decode("utf-8", "replace")


def _explain(reply: str) -> str:
    if "size limit" in reply:
        return f"clamd refused the stream ({reply}); raise its StreamMaxLength to at least 1025M"
    return f"clamd answered {reply!r}"


def _text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class _Waiting:
    storage_key: str
    size: int


def _lock_key(file_id: uuid.UUID) -> int:
    return int.from_bytes(file_id.bytes[:4], "big", signed=True)


async def scan_file(c: Clients, file_id: uuid.UUID) -> None:
    """Scan one file waiting in ``scanning``; raises ``Retry`` while the scanner or the store is away."""
    async with c.pool.acquire() as lock_conn:
        locked = await lock_conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, _lock_key(file_id))
        if not locked:
            log.info("file is being scanned elsewhere; this copy of its message is dropped", extra={"file_id": str(file_id)})
            return
        try:
            await _scan(c, file_id)
        finally:
            with contextlib.suppress(Exception):
                await lock_conn.execute("SELECT pg_advisory_unlock($1, $2)", LOCK_CLASS, _lock_key(file_id))


async def _scan(c: Clients, file_id: uuid.UUID) -> None:
    async with c.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT storage_key, size FROM files WHERE id = $1 AND status = 'scanning'", file_id)
    if row is None:
        return
    waiting = _Waiting(row["storage_key"], row["size"])
    if not c.settings.scanner:
        await _wait(c, file_id, "this worker has no scanner (SLUICE_SCANNER); the file waits for one that has")
        raise Retry("no scanner configured on this worker")
    started = time.monotonic()
    try:
        signature = await _scan_object(c, waiting)
    except ObjectMissing:
        await _lost(c, file_id)
        return
    except (ScannerUnavailable, ScannerRefused, StorageError, urllib3.exceptions.HTTPError, OSError) as exc:
        await _wait(c, file_id, f"the scan could not finish ({exc}); it is retried")
        record_scan("error")
        log.warning(
            "file scanned",
            extra={"file_id": str(file_id), "outcome": "error", "error": str(exc)},
        )
        raise Retry(str(exc)) from exc
    extra = {"file_id": str(file_id), "size": waiting.size, "duration_ms": round((time.monotonic() - started) * 1000)}
    if signature is None:
        await _clean(c, file_id)
        record_scan("clean")
        log.info("file scanned", extra={**extra, "outcome": "clean"})
    else:
        await _quarantine(c, file_id, signature)
        record_scan("infected")
        log.warning("file scanned", extra={**extra, "outcome": "infected", "signature": signature})


async def _scan_object(c: Clients, waiting: _Waiting) -> str | None:
    stream: BinaryIO = await asyncio.to_thread(c.store.open, waiting.storage_key)
    try:
        return await Clamd(c.settings.scanner).scan(lambda n: asyncio.to_thread(stream.read, n))
    finally:
        stream.close()
        with contextlib.suppress(Exception):
            stream.release_conn()  # type: ignore[attr-defined]


async def _wait(c: Clients, file_id: uuid.UUID, reason: str) -> None:
    """Say on the file why it still waits, and touch it, so the sweep knows a message is alive."""
    async with c.pool.acquire() as conn:
        await conn.execute(
            "UPDATE files SET error = $2, updated_at = now() WHERE id = $1 AND status = 'scanning'", file_id, reason
        )


async def _clean(c: Clients, file_id: uuid.UUID) -> None:
    async with c.pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE files SET status = 'stored', error = NULL, scanned_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'scanning' RETURNING id",
            file_id,
        )
        jobs = await conn.fetch("SELECT id FROM jobs WHERE file_id = $1 AND state = 'pending'", file_id) if done else []
    for job in jobs:
        await asyncio.to_thread(c.broker.enqueue, process_file_message(job["id"]))
        async with c.pool.acquire() as conn:
            await conn.execute("UPDATE jobs SET enqueued_at = now(), updated_at = now() WHERE id = $1", job["id"])


async def _quarantine(c: Clients, file_id: uuid.UUID, signature: str) -> None:
    reason = f"quarantined: the malware scanner found {signature}; the file is not served or processed, delete it"
    await _close(c, file_id, reason, signature)


async def _lost(c: Clients, file_id: uuid.UUID) -> None:
    reason = "the file's bytes are missing from the object store (it lost them) before they were scanned; upload the file again"
    await _close(c, file_id, reason, None)
    log.error("file scanned", extra={"file_id": str(file_id), "outcome": "missing"})


async def _close(c: Clients, file_id: uuid.UUID, reason: str, signature: str | None) -> None:
    """End a waiting file, ``quarantined`` with ``signature`` or else ``failed``, fail its jobs, then
    tell their watchers why."""
    async with c.pool.acquire() as conn, conn.transaction():
        if signature is None:
            done = await conn.fetchval(
                "UPDATE files SET status = 'failed', error = $2, updated_at = now()"
                " WHERE id = $1 AND status = 'scanning' RETURNING id",
                file_id,
                reason,
            )
        else:
            done = await conn.fetchval(
                "UPDATE files SET status = 'quarantined', error = $2, scan_signature = $3, scanned_at = now(),"
                " updated_at = now() WHERE id = $1 AND status = 'scanning' RETURNING id",
                file_id,
                reason,
                signature,
            )
        ended = await conn.fetch(
            "UPDATE jobs SET state = 'failed', error = $2, finished_at = now(), updated_at = now()"
            " WHERE file_id = $1 AND state IN ('pending', 'processing') RETURNING id, batch_id, bytes_total",
            file_id,
            reason,
        ) if done else []
    for job in ended:
        event = JobEvent(
            type="failed",
            job_id=str(job["id"]),
            batch_id=str(job["batch_id"]),
            file_id=str(file_id),
            state="failed",
            bytes_total=job["bytes_total"],
            error=reason,
        )
        try:
            await publish(c.redis, job_channel(c.settings.redis_prefix, job["id"]), event)
        except Exception as exc:  # noqa: BLE001 - the job row is the truth; watchers read it on reconnect
            log.warning("job event not published", extra={"job_id": str(job["id"]), "error": str(exc)})


async def rescan_waiting_files(c: Clients) -> None:
    """Send a scan message for each file left ``scanning`` with no live message (see ``SWEEP_AFTER``)."""
    if not c.settings.scanner:
        return
    cutoff = datetime.now(UTC) - SWEEP_AFTER
    async with c.pool.acquire() as conn:
        waiting = await conn.fetch(
            "UPDATE files SET updated_at = now() WHERE id IN"
            " (SELECT id FROM files WHERE status = 'scanning' AND updated_at < $1 ORDER BY updated_at LIMIT 1000)"
            " RETURNING id",
            cutoff,
        )
    for row in waiting:
        await asyncio.to_thread(c.broker.enqueue, scan_file_message(row["id"]))
    if waiting:
        log.info("scan messages re-sent", extra={"count": len(waiting)})
