"""Bearer API keys: creation (shown once, stored as a hash) and the authentication middleware.

A browser's EventSource cannot send an Authorization header, so an event stream also accepts a
``token`` query parameter: a link minted with the key, valid for that one stream path until it
expires, signed with the server's ``SLUICE_SECRET_KEY`` over the key id, the path and the expiry.
Nothing stored in the database can forge one, and the key is looked up on every use, so revoking
it revokes its links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import ApiKey

KEY_PREFIX = "slk_"
_TOUCH_EVERY = timedelta(minutes=1)
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
STREAM_PATH = re.compile(rf"^/api/v1/(jobs|batches|uploads)/({_UUID})/events(?:/ws)?$")
"""The paths a stream link may open: the event streams (SSE, or the same over a WebSocket), nothing else."""


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
    session: AsyncSession,
    name: str,
    *,
    admin: bool = False,
    owner_id: uuid.UUID | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its secret, which is never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        owner_id=owner_id or uuid.uuid4(),
        key_hash=hash_key(secret),
        prefix=secret[: len(KEY_PREFIX) + 6],
        is_admin=admin,
        expires_at=expires_at,
    )
    session.add(key)
    await session.flush()
    return key, secret


def sign_link(secret: str, purpose: str, key_id: uuid.UUID, subject: str, expires: int) -> str:
    """A link token: the key id, the expiry (Unix seconds) and their signature with ``subject`` (what
    the link opens) under ``purpose``, so a token made for one kind of link never opens another."""
    return f"{key_id.hex}.{expires}.{link_signature(secret, purpose, key_id, subject, expires)}"


def link_signature(secret: str, purpose: str, key_id: uuid.UUID, subject: str, expires: int) -> str:
    message = f"{purpose}\n{key_id.hex}\n{subject}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def parse_link(token: str) -> tuple[uuid.UUID, int, str] | None:
    """Key id, expiry and signature of a link token; None when it is malformed."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return uuid.UUID(hex=parts[0]), int(parts[1]), parts[2]
    except ValueError:
        return None


STREAM_LINK = "sluice-stream-link"


def stream_token(secret: str, key_id: uuid.UUID, path: str, expires: int) -> str:
    """A link token for ``path`` (an event stream) until ``expires`` (Unix seconds), for key ``key_id``."""
    return sign_link(secret, STREAM_LINK, key_id, path, expires)


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        token = connection.query_params.get("token")
        # A WebSocket handshake is a GET; its scope has no method.
        method = connection.scope.get("method", "GET")
        if not header and token and method == "GET" and STREAM_PATH.match(connection.url.path):
            key = await self._from_link(connection, token)
        else:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise NotAuthorizedException("send your API key as 'Authorization: Bearer <key>'")
            key = await _key(connection, ApiKey.key_hash == hash_key(secret.strip()))
        return AuthenticationResult(user=Principal(key.owner_id, key.id, key.is_admin), auth=key.id)

    async def _from_link(self, connection: ASGIConnection, token: str) -> ApiKey:
        parsed = parse_link(token)
        if parsed is None:
            raise NotAuthorizedException("the stream link's token is malformed; ask for a new link")
        key_id, expires, signature = parsed
        if expires < time.time():
            raise NotAuthorizedException("the stream link has expired; ask for a new link")
        secret = connection.app.state.resources.settings.secret_key
        expected = link_signature(secret, STREAM_LINK, key_id, connection.url.path, expires)
        if not secret or not hmac.compare_digest(signature, expected):
            raise NotAuthorizedException("the stream link's token is not valid for this stream")
        # Looked up after the signature: a revoked (or deleted) key's links stop working.
        return await _key(connection, ApiKey.id == key_id)


async def _key(connection: ASGIConnection, match: ColumnElement[bool]) -> ApiKey:
    """The live key that ``match`` finds (its last use noted, at most once a minute), else 401.

    Nothing is cached in the process: every request reads the key's row, so a revocation or an
    expiry holds on every API process from the next request on.
    """
    async with connection.app.state.resources.sessionmaker() as session:
        key = await session.scalar(select(ApiKey).where(match))
        now = datetime.now(UTC)
        if key is None:
            raise NotAuthorizedException("the API key is not valid")
        if key.revoked_at is not None:
            raise NotAuthorizedException("the API key was revoked; ask an admin for a new one")
        if key.expires_at is not None and key.expires_at <= now:
            raise NotAuthorizedException("the API key has expired; ask an admin for a new one")
        if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
            await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
            await session.commit()
    return key
