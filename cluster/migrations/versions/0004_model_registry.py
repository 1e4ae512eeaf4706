"""model registry: registered models, versions, aliases and their history

Models trained before this revision keep working by their own ids (a v1 UUID, a v3
``custom_model_{id}`` names its current checkpoint) and enter the registry with their next run.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:35:50.518817
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('registered_models',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('latest_version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('organization_id', 'name', name='uq_registered_models_org_name')
    )
    with op.batch_alter_table('registered_models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registered_models_organization_id'), ['organization_id'], unique=False)

    op.create_table('model_alias_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('registered_model_id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('version', sa.Integer(), nullable=True),
    sa.Column('previous_version', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('forced', sa.Boolean(), nullable=False),
    sa.Column('set_by', sa.String(length=36), nullable=True),
    sa.Column('set_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['registered_model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('model_alias_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_alias_events_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_alias_events_registered_model_id'), ['registered_model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_alias_events_set_at'), ['set_at'], unique=False)

    op.create_table('model_aliases',
    sa.Column('registered_model_id', sa.String(length=36), nullable=False),
    sa.Column('alias', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['registered_model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('registered_model_id', 'alias')
    )
    op.create_table('model_versions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('registered_model_id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('detector_model_id', sa.String(length=36), nullable=True),
    sa.Column('custom_model_id', sa.Integer(), nullable=True),
    sa.Column('training_run', sa.Integer(), nullable=True),
    sa.Column('checkpoint_key', sa.String(length=300), nullable=True),
    sa.Column('training_job_id', sa.String(length=36), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('archived_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['registered_model_id'], ['registered_models.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('registered_model_id', 'version', name='uq_model_versions_model_version')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_custom_model_id'), ['custom_model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_versions_detector_model_id'), ['detector_model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_versions_organization_id'), ['organization_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_versions_registered_model_id'), ['registered_model_id'], unique=False)

    with op.batch_alter_table('custom_models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('run_by', sa.String(length=36), nullable=True))

    with op.batch_alter_table('inference_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('model_reference', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('model_version', sa.String(length=300), nullable=True))

    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sa.String(length=36), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('training_jobs', schema=None) as batch_op:
        batch_op.drop_column('created_by')

    with op.batch_alter_table('inference_jobs', schema=None) as batch_op:
        batch_op.drop_column('model_version')
        batch_op.drop_column('model_reference')

    with op.batch_alter_table('custom_models', schema=None) as batch_op:
        batch_op.drop_column('run_by')

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_versions_registered_model_id'))
        batch_op.drop_index(batch_op.f('ix_model_versions_organization_id'))
        batch_op.drop_index(batch_op.f('ix_model_versions_detector_model_id'))
        batch_op.drop_index(batch_op.f('ix_model_versions_custom_model_id'))

    op.drop_table('model_versions')
    op.drop_table('model_aliases')
    with op.batch_alter_table('model_alias_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_model_alias_events_set_at'))
        batch_op.drop_index(batch_op.f('ix_model_alias_events_registered_model_id'))
        batch_op.drop_index(batch_op.f('ix_model_alias_events_organization_id'))

    op.drop_table('model_alias_events')
    with op.batch_alter_table('registered_models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registered_models_organization_id'))

    op.drop_table('registered_models')
