"""key lifecycle (revocation, expiry, last use) and per-owner quotas

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 04:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
