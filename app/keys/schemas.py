"""API shapes of the key routes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from db.models import ApiKey


class KeyRecord(msgspec.Struct):
    """A key as an admin sees it; never its secret."""

    id: uuid.UUID
    name: str
    prefix: str
    owner_id: uuid.UUID
    admin: bool
    state: str
    """``active``, ``revoked`` or ``expired``."""
    created_at: datetime
    last_used_at: datetime | None
    """Noted at most once a minute per key."""
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyRecord:
        return cls(
            id=key.id,
            name=key.name,
            prefix=key.prefix,
            owner_id=key.owner_id,
            admin=key.is_admin,
            state=key_state(key),
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class CreatedKey(KeyRecord, kw_only=True):
    secret: str
    """The key itself: shown this once, never stored."""

    @classmethod
    def with_secret(cls, key: ApiKey, secret: str) -> CreatedKey:
        return cls(**msgspec.structs.asdict(KeyRecord.of(key)), secret=secret)


class KeyPage(msgspec.Struct):
    items: list[KeyRecord]
    total: int
    offset: int
    limit: int


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    admin: bool = False
    owner_id: uuid.UUID | None = None
    """Add the key to this owner; a new owner when left out."""
    expires: str | None = None
    """Lifetime from now: ``90d``, ``12h``, ``30m``, ``2w``; none: never expires."""


def key_state(key: ApiKey) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"
