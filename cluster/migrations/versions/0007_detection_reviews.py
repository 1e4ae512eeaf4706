"""detection reviews

New table only: existing rows are untouched.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 18:18:15.477090
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('detection_reviews',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('inference_file_id', sa.String(length=36), nullable=False),
    sa.Column('detection_id', sa.String(length=20), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('artifact_type', sa.String(length=100), nullable=True),
    sa.Column('start_ms', sa.Integer(), nullable=True),
    sa.Column('end_ms', sa.Integer(), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('reviewed_by', sa.String(length=36), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['inference_file_id'], ['inference_files.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('inference_file_id', 'detection_id', name='uq_detection_reviews_detection')
    )
    with op.batch_alter_table('detection_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_detection_reviews_inference_file_id'), ['inference_file_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_detection_reviews_organization_id'), ['organization_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('detection_reviews', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_detection_reviews_organization_id'))
        batch_op.drop_index(batch_op.f('ix_detection_reviews_inference_file_id'))

    op.drop_table('detection_reviews')
