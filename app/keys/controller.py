"""Admin routes for API keys: list, create, revoke, rotate (``sluice keys`` does the same)."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.controller import admin_only
from app.keys.schemas import CreatedKey, KeyIn, KeyPage, KeyRecord
from app.keys.service import KeyService
from app.openapi import errors
from app.params import Limit, Offset


def provide_key_service(db_session: AsyncSession) -> KeyService:
    return KeyService(db_session)


class KeyController(Controller):
    path = "/api/v1/admin/keys"
    tags = ["admin"]
    guards = [admin_only]
    dependencies = {"keys": Provide(provide_key_service, sync_to_thread=False)}

    @get("/", operation_id="adminListKeys", summary="Every key (newest first), or one owner's", responses=errors(403, 422))
    async def list_keys(
        self,
        keys: KeyService,
        owner_id: uuid.UUID | None = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> KeyPage:
        items, total = await keys.list(owner_id=owner_id, offset=offset, limit=limit)
        return KeyPage(items=[KeyRecord.of(k) for k in items], total=total, offset=offset, limit=limit)

    @post(
        "/",
        operation_id="adminCreateKey",
        status_code=201,
        summary="Create a key; its secret is in this answer only",
        responses=errors(403, 422),
    )
    async def create_key(self, keys: KeyService, data: KeyIn) -> CreatedKey:
        key, secret = await keys.create(data.name, admin=data.admin, owner_id=data.owner_id, expires=data.expires)
        return CreatedKey.with_secret(key, secret)

    @get("/{key_id:uuid}", operation_id="adminGetKey", summary="One key", responses=errors(403, 404))
    async def get_key(self, keys: KeyService, key_id: uuid.UUID) -> KeyRecord:
        return KeyRecord.of(await keys.get(key_id))

    @post(
        "/{key_id:uuid}/revoke",
        operation_id="adminRevokeKey",
        status_code=200,
        summary="Revoke a key at once on every API process; its stream links stop working too",
        responses=errors(403, 404),
    )
    async def revoke_key(self, keys: KeyService, key_id: uuid.UUID) -> KeyRecord:
        return KeyRecord.of(await keys.revoke(key_id))

    @post(
        "/{key_id:uuid}/rotate",
        operation_id="adminRotateKey",
        status_code=201,
        summary="Revoke a key and give its owner a new one (same name, admin flag and expiry); the secret is shown once",
        responses=errors(403, 404, 409),
    )
    async def rotate_key(self, keys: KeyService, key_id: uuid.UUID) -> CreatedKey:
        key, secret = await keys.rotate(key_id)
        return CreatedKey.with_secret(key, secret)
