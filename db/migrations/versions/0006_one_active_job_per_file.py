"""one active job per file; indexes of the periodic sweeps

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 01:00:00

A file may have one pending or processing job at a time: the service checks before it inserts,
and this partial unique index makes two concurrent requests unable to both pass that check. The
other two indexes serve the job sweeps: re-sending idle active jobs (by ``updated_at``) and purging
finished ones past the retention period (by ``finished_at``).
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("state IN ('pending', 'processing')")


def upgrade() -> None:
    op.create_index('uq_jobs_one_active_per_file', 'jobs', ['file_id'], unique=True, postgresql_where=ACTIVE)
    op.create_index('ix_jobs_active_updated', 'jobs', ['updated_at'], postgresql_where=ACTIVE)
    op.create_index(
        'ix_jobs_finished', 'jobs', ['finished_at'], postgresql_where=sa.text("finished_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index('ix_jobs_finished', table_name='jobs')
    op.drop_index('ix_jobs_active_updated', table_name='jobs')
    op.drop_index('uq_jobs_one_active_per_file', table_name='jobs')
