"""``GET /api/v1/me``: the calling key, and its owner's use of each quota."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from litestar import get
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Principal
from app.keys.service import KeyService
from app.openapi import errors
from app.quotas.schemas import QuotaUses
from app.quotas.service import QuotaService
from db.settings import Settings


class Me(msgspec.Struct):
    key_id: uuid.UUID
    name: str
    prefix: str
    owner_id: uuid.UUID
    admin: bool
    expires_at: datetime | None
    quotas: QuotaUses
    """Each quota's limit (``null``: unlimited) and the owner's use of it."""


@get("/api/v1/me", operation_id="me", tags=["keys"], summary="The calling key and its quotas", responses=errors())
async def me(principal: Principal, db_session: AsyncSession, settings: Settings) -> Me:
    key = await KeyService(db_session).get(principal.key_id)
    uses = await QuotaService(db_session, settings).usage(principal.owner_id)
    return Me(
        key_id=key.id,
        name=key.name,
        prefix=key.prefix,
        owner_id=key.owner_id,
        admin=key.is_admin,
        expires_at=key.expires_at,
        quotas=QuotaUses.of(uses),
    )
