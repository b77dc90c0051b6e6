"""Key lifecycle: create, list, revoke and rotate (for the admin routes and ``sluice keys``)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import create_api_key
from app.errors import Conflict, NotFound, Unprocessable
from db.models import ApiKey

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_LIFETIME = timedelta(days=100 * 365)


def parse_lifetime(text: str | None) -> datetime | None:
    """``90d`` (s, m, h, d, w) as the moment it ends from now; ``None`` or empty: never."""
    if text is None or not text.strip():
        return None
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) < 1:
        raise Unprocessable(f"expires {text!r} is not a lifetime; write e.g. 90d, 12h, 30m or 2w")
    lifetime = timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])
    if lifetime > MAX_LIFETIME:
        raise Unprocessable(f"expires {text!r} is more than 100 years; leave it out for a key that never expires")
    return datetime.now(UTC) + lifetime


class KeyService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, name: str, *, admin: bool = False, owner_id: uuid.UUID | None = None, expires: str | None = None
    ) -> tuple[ApiKey, str]:
        if not name.strip():
            raise Unprocessable("name must not be blank; name the key after who or what uses it")
        expires_at = parse_lifetime(expires)
        key, secret = await create_api_key(self.session, name.strip(), admin=admin, owner_id=owner_id, expires_at=expires_at)
        await self.session.commit()
        await self.session.refresh(key)
        return key, secret

    async def list(
        self, *, owner_id: uuid.UUID | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[ApiKey], int]:
        where = [ApiKey.owner_id == owner_id] if owner_id is not None else []
        total = await self.session.scalar(select(func.count()).select_from(ApiKey).where(*where)) or 0
        rows = await self.session.scalars(
            select(ApiKey).where(*where).order_by(ApiKey.created_at.desc(), ApiKey.id).offset(offset).limit(limit)
        )
        return list(rows), total

    async def get(self, key_id: uuid.UUID) -> ApiKey:
        key = await self.session.get(ApiKey, key_id, populate_existing=True)
        if key is None:
            raise NotFound(f"no key {key_id}")
        return key

    async def revoke(self, key_id: uuid.UUID) -> ApiKey:
        """Revoke at once (the next request with it, on any API process, answers 401); a repeat is a no-op."""
        key = await self._locked(key_id)
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
        await self.session.commit()
        return key

    async def rotate(self, key_id: uuid.UUID) -> tuple[ApiKey, str]:
        """A new secret with the same owner, name, admin flag and expiry; the old key is revoked in the same commit."""
        old = await self._locked(key_id)
        if old.revoked_at is not None:
            raise Conflict(f"key {key_id} is revoked; create a new key instead")
        if old.expires_at is not None and old.expires_at <= datetime.now(UTC):
            raise Conflict(f"key {key_id} has expired; create a new key instead")
        old.revoked_at = datetime.now(UTC)
        key, secret = await create_api_key(
            self.session, old.name, admin=old.is_admin, owner_id=old.owner_id, expires_at=old.expires_at
        )
        await self.session.commit()
        await self.session.refresh(key)
        return key, secret

    async def _locked(self, key_id: uuid.UUID) -> ApiKey:
        key = await self.session.scalar(
            select(ApiKey).where(ApiKey.id == key_id).with_for_update().execution_options(populate_existing=True)
        )
        if key is None:
            raise NotFound(f"no key {key_id}")
        return key
