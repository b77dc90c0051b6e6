"""an hourly rollup of uploads and jobs for the operations dashboard

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
    op.create_table('hourly_metrics',
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('uploads', sa.Integer(), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('upload_failures', sa.Integer(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('rows_rejected', sa.BigInteger(), nullable=False),
    sa.Column('jobs_completed', sa.Integer(), nullable=False),
    sa.Column('job_failures', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('hour', name=op.f('pk_hourly_metrics'))
    )
    op.create_index('ix_files_stored_at', 'files', ['stored_at'], unique=False, postgresql_where=sa.text('stored_at IS NOT NULL'))
    op.create_index('ix_files_failed_updated', 'files', ['updated_at'], unique=False, postgresql_where=sa.text("status = 'failed'"))


def downgrade() -> None:
    op.drop_index('ix_files_failed_updated', table_name='files', postgresql_where=sa.text("status = 'failed'"))
    op.drop_index('ix_files_stored_at', table_name='files', postgresql_where=sa.text('stored_at IS NOT NULL'))
    op.drop_table('hourly_metrics')
