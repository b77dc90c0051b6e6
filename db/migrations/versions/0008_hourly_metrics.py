"""an hourly rollup of uploads and jobs for the operations dashboard (filled in by the web work)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
