"""issue 12 (hardening): frames planned vs decoded, session warnings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Nullable: sessions processed before this revision did not record them (NULL = not known, not "none").
SESSION_COLUMNS = (
    ('frames_planned', sa.Integer()),
    ('frames_decoded', sa.Integer()),
    ('warnings', sa.JSON()),
)


def upgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        for name, kind in SESSION_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        for name, _ in reversed(SESSION_COLUMNS):
            batch_op.drop_column(name)
