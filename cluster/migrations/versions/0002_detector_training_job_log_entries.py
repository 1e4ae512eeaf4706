"""detector training job log entries

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 13:34:48.312456
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('training_job_log_entries',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('training_job_id', sa.String(length=36), nullable=False),
    sa.Column('timestamp', sa.DateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['training_job_id'], ['training_jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('training_job_log_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_training_job_log_entries_training_job_id'), ['training_job_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('training_job_log_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_training_job_log_entries_training_job_id'))

    op.drop_table('training_job_log_entries')
