from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Integer, func
from sqlalchemy.orm import Mapped, mapped_column

from db.models.base import Base


class OwnerQuota(Base):
    """An owner's own limits, set by an admin; a ``NULL`` limit falls back to the setting's default."""

    __tablename__ = "owner_quotas"

    owner_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    max_files: Mapped[int | None] = mapped_column(Integer)
    max_sessions: Mapped[int | None] = mapped_column(Integer)
    max_jobs: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
