"""issue 9 (honest PHQ numbers): prediction caveats, head standing

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


HEAD_COLUMNS = (
    ('config', sa.JSON()),
    ('params', sa.LargeBinary()),
    ('params_sha256', sa.String(length=64)),
    ('head_format', sa.Integer()),
    ('beats_baseline', sa.Boolean()),
    ('interval_method', sa.String(length=128)),
    ('sample_fps', sa.Float()),
    ('feature_version', sa.String(length=32)),
    ('openface_columns_sha256', sa.String(length=64)),
    ('max_imputed_fraction', sa.Float()),
)
PREDICTION_COLUMNS = (
    ('n_imputed', sa.Integer()),
    ('imputed_features', sa.JSON()),
    ('n_features', sa.Integer()),
    ('in_sample', sa.Boolean()),
    ('out_of_fold', sa.Boolean()),
    ('in_sample_estimate', sa.Float()),
    ('interval_method', sa.String(length=128)),
)


def upgrade() -> None:
    # PHQ heads live in the database (issue 11 item 5): the file path becomes optional. Heads saved as
    # files are imported by `fervideo db upgrade` (fervideo.phq.head_store.import_file_heads), not here:
    # reading FERVIDEO_HOME is the CLI's business, not a schema migration's.
    with op.batch_alter_table('phq_heads', schema=None) as batch_op:
        batch_op.alter_column('path', existing_type=sa.Text(), nullable=True)
        for name, kind in HEAD_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    with op.batch_alter_table('phq_predictions', schema=None) as batch_op:
        for name, kind in PREDICTION_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('phq_predictions', schema=None) as batch_op:
        for name, _ in reversed(PREDICTION_COLUMNS):
            batch_op.drop_column(name)
    op.execute("UPDATE phq_heads SET path = '' WHERE path IS NULL")
    with op.batch_alter_table('phq_heads', schema=None) as batch_op:
        for name, _ in reversed(HEAD_COLUMNS):
            batch_op.drop_column(name)
        batch_op.alter_column('path', existing_type=sa.Text(), nullable=False)
