"""issue 11 (batches): session leases, artefacts in the database

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Session leases (issue 11 item 6): who writes a running session, and when it last said so.
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('lease_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lease_pid')
        batch_op.drop_column('lease_host')
