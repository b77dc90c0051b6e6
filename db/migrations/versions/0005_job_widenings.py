"""job widenings

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 10:00:00

``jobs.widenings`` lists the columns whose inferred type a later value did not fit, and the wider
type the worker gave them (column, from_type, to_type, row_number), so the job record says so.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'jobs',
        sa.Column(
            'widenings', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_column('jobs', 'widenings')
