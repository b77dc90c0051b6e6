"""upload progress marks and pending multipart aborts

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00

``files.touched_at`` is moved forward while a single-shot upload streams, so the sweeper can fail
an upload whose API process died within ``SLUICE_UPLOAD_STALL_TIMEOUT`` instead of a day later.
``files.s3_upload_id`` names that upload's S3 multipart upload until it is completed or released,
``files.purge_pending`` marks a deleted file whose object could not be removed yet, and
``upload_sessions.abort_pending`` marks a closed session whose multipart upload could not be
released (object store down), so the sweeper releases it once the store is back.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('files', sa.Column('touched_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('files', sa.Column('s3_upload_id', sa.String(length=1024), nullable=True))
    op.create_index(
        'ix_files_receiving_touched',
        'files',
        ['touched_at'],
        unique=False,
        postgresql_where=sa.text("status = 'receiving'"),
    )
    op.create_index(
        'ix_files_pending_release',
        'files',
        ['updated_at'],
        unique=False,
        postgresql_where=sa.text("s3_upload_id IS NOT NULL AND status <> 'receiving'"),
    )
    op.add_column(
        'files', sa.Column('purge_pending', sa.Boolean(), server_default=sa.text('false'), nullable=False)
    )
    op.create_index(
        'ix_files_purge_pending', 'files', ['updated_at'], unique=False, postgresql_where=sa.text('purge_pending')
    )
    op.add_column(
        'upload_sessions',
        sa.Column('abort_pending', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    )
    op.create_index(
        'ix_upload_sessions_abort_pending',
        'upload_sessions',
        ['updated_at'],
        unique=False,
        postgresql_where=sa.text('abort_pending'),
    )


def downgrade() -> None:
    op.drop_index('ix_upload_sessions_abort_pending', table_name='upload_sessions')
    op.drop_column('upload_sessions', 'abort_pending')
    op.drop_index('ix_files_purge_pending', table_name='files')
    op.drop_column('files', 'purge_pending')
    op.drop_index('ix_files_pending_release', table_name='files')
    op.drop_index('ix_files_receiving_touched', table_name='files')
    op.drop_column('files', 's3_upload_id')
    op.drop_column('files', 'touched_at')
