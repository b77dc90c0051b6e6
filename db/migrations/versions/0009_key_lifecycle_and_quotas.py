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
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "owner_quotas",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_files", sa.Integer(), nullable=True),
        sa.Column("max_sessions", sa.Integer(), nullable=True),
        sa.Column("max_jobs", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_owner_quotas")),
    )


def downgrade() -> None:
    op.drop_table("owner_quotas")
    op.drop_column("api_keys", "expires_at")
