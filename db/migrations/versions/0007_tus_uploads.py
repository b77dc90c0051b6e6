"""tus 1.0 uploads are upload sessions with a byte offset

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 01:10:00

A tus upload is an ``upload_sessions`` row (``protocol = 'tus'``) so that expiry, the admin
listing, the events stream and the stall/abort machinery apply to it unchanged. Its parts are
``upload_chunks`` rows; ``offset`` counts the bytes durably stored (parts plus the tail object of
``tail_size`` bytes); ``lock_token``/``locked_until`` let one PATCH at a time write, across API
processes, without holding a database connection while the body arrives.
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('upload_sessions', sa.Column('protocol', sa.String(length=8), server_default='chunks', nullable=False))
    op.add_column('upload_sessions', sa.Column('offset', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column('upload_sessions', sa.Column('tail_size', sa.BigInteger(), server_default='0', nullable=False))
    op.add_column(
        'upload_sessions', sa.Column('length_deferred', sa.Boolean(), server_default=sa.text('false'), nullable=False)
    )
    op.add_column('upload_sessions', sa.Column('tus_metadata', sa.Text(), nullable=True))
    op.add_column('upload_sessions', sa.Column('concat', sa.String(length=8), nullable=True))
    op.add_column('upload_sessions', sa.Column('concat_of', sa.Text(), nullable=True))
    op.add_column('upload_sessions', sa.Column('lock_token', sa.Uuid(), nullable=True))
    op.add_column('upload_sessions', sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for column in (
        'locked_until', 'lock_token', 'concat_of', 'concat', 'tus_metadata', 'length_deferred', 'tail_size', 'offset',
        'protocol',
    ):
        op.drop_column('upload_sessions', column)
