"""Bearer API keys: creation (shown once, stored as a hash) and the authentication middleware."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey

KEY_PREFIX = "slk_"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: every query the services run is scoped by ``owner_id``."""

    owner_id: uuid.UUID
    key_id: uuid.UUID
    is_admin: bool


def hash_key(secret: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough; no salt or slow hash needed.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_api_key(
    session: AsyncSession, name: str, *, admin: bool = False, owner_id: uuid.UUID | None = None
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        owner_id=owner_id or uuid.uuid4(),
        key_hash=hash_key(secret),
        prefix=secret[: len(KEY_PREFIX) + 6],
        is_admin=admin,
    )
    session.add(key)
    await session.flush()
    return key, secret


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise NotAuthorizedException("send your API key as 'Authorization: Bearer <key>'")
        sessionmaker = connection.app.state.resources.sessionmaker
        async with sessionmaker() as session:
            key = await session.scalar(
                select(ApiKey).where(ApiKey.key_hash == hash_key(secret.strip()), ApiKey.revoked_at.is_(None))
            )
            if key is None:
                raise NotAuthorizedException("the API key is not valid")
            now = datetime.now(UTC)
            if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
                await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
                await session.commit()
        return AuthenticationResult(user=Principal(key.owner_id, key.id, key.is_admin), auth=key.id)
