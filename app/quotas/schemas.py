"""API shapes of quotas."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from app.quotas.service import Use

Limit = Annotated[int, msgspec.Meta(ge=0, le=2**62)] | None


class QuotaUse(msgspec.Struct):
    limit: int | None
    """``null``: unlimited."""
    used: int

    @classmethod
    def of(cls, use: Use) -> QuotaUse:
        return cls(limit=use.limit, used=use.used)


class QuotaUses(msgspec.Struct):
    bytes: QuotaUse
    files: QuotaUse
    sessions: QuotaUse
    jobs: QuotaUse

    @classmethod
    def of(cls, uses: dict[str, Use]) -> QuotaUses:
        return cls(**{name: QuotaUse.of(use) for name, use in uses.items()})


class OwnerQuotaIn(msgspec.Struct, forbid_unknown_fields=True):
    """Fields left out keep their value; ``null`` puts one back to the server's default."""

    bytes: Limit | msgspec.UnsetType = msgspec.UNSET
    files: Limit | msgspec.UnsetType = msgspec.UNSET
    sessions: Limit | msgspec.UnsetType = msgspec.UNSET
    jobs: Limit | msgspec.UnsetType = msgspec.UNSET

    def given(self) -> dict[str, int | None]:
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not msgspec.UNSET}


class OwnLimits(msgspec.Struct):
    bytes: int | None
    files: int | None
    sessions: int | None
    jobs: int | None


class OwnerQuotaRecord(msgspec.Struct):
    owner_id: uuid.UUID
    own: OwnLimits
    """The owner's own limits; ``null`` where the default applies."""
    quotas: QuotaUses
    """The limits in force (own, else default; ``null``: unlimited) and the owner's use of each."""
