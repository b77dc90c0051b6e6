"""Per-owner quotas: stored bytes, files, open upload sessions and active jobs.

Each limit is the owner's own (``owner_quotas``, set by an admin) or else the setting's default;
``None`` is unlimited. Every check runs before anything is stored: a declared size that would pass
the bytes quota is refused at once, and an undeclared stream is metered and stopped as soon as it
passes it (the caller's own failure path then releases what it wrote). Checks are not locks:
uploads that start at the same moment may each see the same room.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict, PayloadTooLarge, ServiceError
from app.metrics import record_quota_refusal
from db.models import File, FileStatus, Job, JobState, OwnerQuota, SessionState, UploadSession
from db.models.files import HOLDS_OBJECT
from db.settings import Settings, parse_size

if TYPE_CHECKING:
    from app.files.service import Incoming

QUOTAS = ("bytes", "files", "sessions", "jobs")
"""The quota names, as the API and the CLI spell them."""
_COLUMNS = {"bytes": "max_bytes", "files": "max_files", "sessions": "max_sessions", "jobs": "max_jobs"}
_WHAT = {
    "bytes": "bytes stored",
    "files": "files kept",
    "sessions": "upload sessions open at once",
    "jobs": "processing jobs at once",
}


@dataclass(frozen=True, slots=True)
class Use:
    limit: int | None
    used: int


def quota_error(quota: str, limit: int, used: int, asked: int | None = None, *, at_least: bool = False) -> ServiceError:
    """413 for the bytes quota, 409 for the counted ones; the detail names the quota, its limit and use."""
    wanted = f"; this request needs {'at least ' if at_least else ''}{asked} more" if asked is not None else ""
    detail = (
        f"the {quota} quota is exceeded: the limit is {limit} {_WHAT[quota]} and {used} are in use{wanted}; "
        + ("delete files or ask an admin for a larger quota" if quota in ("bytes", "files") else "wait for some to finish or ask an admin for a larger quota")
    )
    record_quota_refusal(quota)
    error = PayloadTooLarge if quota == "bytes" else Conflict
    return error(detail, quota=quota, limit=limit, used=used)


class QuotaService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings

    def defaults(self) -> dict[str, int | None]:
        return {q: parse_size(getattr(self.settings, f"quota_{q}"), f"SLUICE_QUOTA_{q.upper()}") for q in QUOTAS}

    async def own(self, owner_id: uuid.UUID) -> dict[str, int | None]:
        """The owner's own limits (``None``: the default applies)."""
        row = await self.session.get(OwnerQuota, owner_id, populate_existing=True)
        return {q: getattr(row, _COLUMNS[q]) if row is not None else None for q in QUOTAS}

    async def limits(self, owner_id: uuid.UUID) -> dict[str, int | None]:
        own, defaults = await self.own(owner_id), self.defaults()
        return {q: own[q] if own[q] is not None else defaults[q] for q in QUOTAS}

    async def set(self, owner_id: uuid.UUID, values: dict[str, int | None]) -> dict[str, int | None]:
        """Set the given limits (``None`` clears one back to the default); the others keep theirs."""
        for quota, value in values.items():
            if value is not None and value < 0:
                raise ServiceError(f"the {quota} quota must be 0 or more (or null for the default)")
        columns = {_COLUMNS[q]: v for q, v in values.items()}
        statement = insert(OwnerQuota).values(owner_id=owner_id, **columns)
        if columns:
            statement = statement.on_conflict_do_update(
                index_elements=[OwnerQuota.owner_id], set_=columns | {"updated_at": func.now()}
            )
        else:
            statement = statement.on_conflict_do_nothing()
        await self.session.execute(statement)
        await self.session.commit()
        return await self.own(owner_id)

    async def usage(self, owner_id: uuid.UUID) -> dict[str, Use]:
        limits = await self.limits(owner_id)
        used = {q: await self._used(owner_id, q) for q in QUOTAS}
        return {q: Use(limits[q], used[q]) for q in QUOTAS}

    async def admit_file(self, owner_id: uuid.UUID, incoming: Incoming) -> Incoming:
        """Check a single-shot file against the files and bytes quotas; an undeclared body comes back metered."""
        await self._check(owner_id, "files", 1)
        bytes_use = await self._check(owner_id, "bytes", incoming.declared_size or 0)
        if bytes_use is None:
            return incoming
        return dataclasses.replace(incoming, body=_metered(incoming.body, bytes_use))

    async def meter(self, owner_id: uuid.UUID, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``body`` (of a length not declared up front), stopped with a refusal once it passes the bytes quota."""
        bytes_use = await self._check(owner_id, "bytes", 0)
        return body if bytes_use is None else _metered(body, bytes_use)

    async def admit_session(self, owner_id: uuid.UUID, size: int | None) -> None:
        """Check a new upload session (chunked or tus; ``size`` unknown for a deferred tus length)."""
        await self._check(owner_id, "sessions", 1)
        await self._check(owner_id, "files", 1)
        await self._check(owner_id, "bytes", size or 0)

    async def admit_jobs(self, owner_id: uuid.UUID, count: int) -> None:
        await self._check(owner_id, "jobs", count)

    async def _check(self, owner_id: uuid.UUID, quota: str, asked: int) -> Use | None:
        """The quota's limit and use (``None``: unlimited); refuses if ``asked`` more would pass the limit."""
        limit = (await self.limits(owner_id))[quota]
        if limit is None:
            return None
        used = await self._used(owner_id, quota)
        if used + asked > limit or (quota != "bytes" and used >= limit):
            raise quota_error(quota, limit, used, asked if quota == "bytes" and asked else None)
        return Use(limit, used)

    async def _used(self, owner_id: uuid.UUID, quota: str) -> int:
        if quota == "bytes":
            stored = select(func.coalesce(func.sum(File.size), 0)).where(
                File.owner_id == owner_id, File.status.in_(HOLDS_OBJECT)
            )
            # An open session's declared size is spoken for; a deferred tus length counts what arrived.
            reserved = select(func.coalesce(func.sum(func.greatest(UploadSession.size, UploadSession.offset)), 0)).where(
                UploadSession.owner_id == owner_id, UploadSession.state == SessionState.receiving
            )
            return int(await self.session.scalar(stored) or 0) + int(await self.session.scalar(reserved) or 0)
        if quota == "files":
            where = [File.owner_id == owner_id, File.status.in_(HOLDS_OBJECT | {FileStatus.receiving})]
            return int(await self.session.scalar(select(func.count()).select_from(File).where(*where)) or 0)
        if quota == "sessions":
            where = [UploadSession.owner_id == owner_id, UploadSession.state == SessionState.receiving]
            return int(await self.session.scalar(select(func.count()).select_from(UploadSession).where(*where)) or 0)
        where = [Job.owner_id == owner_id, Job.state.in_((JobState.pending, JobState.processing))]
        return int(await self.session.scalar(select(func.count()).select_from(Job).where(*where)) or 0)


async def _metered(body: AsyncIterator[bytes], use: Use) -> AsyncIterator[bytes]:
    """``body`` until it passes the room left in the bytes quota, then a refusal."""
    assert use.limit is not None
    room, seen = use.limit - use.used, 0
    async for data in body:
        seen += len(data)
        if seen > room:
            raise quota_error("bytes", use.limit, use.used, seen, at_least=True)
        yield data
