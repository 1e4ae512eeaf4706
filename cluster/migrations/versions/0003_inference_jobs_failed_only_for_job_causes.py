"""inference jobs: failed only for job-level causes

Before this revision a job whose processed files had all failed was stored as ``failed``
with the message below; such a job still accepts files and is now ``completed`` (its
failures stay on the files). Jobs failed for a job-level cause carry other messages.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

EVERY_FILE_FAILED = "every file failed; see each file's error_message"


def upgrade() -> None:
    op.execute(
        sa.text("UPDATE inference_jobs SET status = 'completed', error_message = NULL WHERE status = 'failed' AND error_message = :m").bindparams(
            m=EVERY_FILE_FAILED
        )
    )


def downgrade() -> None:
    pass  # the old status was wrong; nothing to restore
