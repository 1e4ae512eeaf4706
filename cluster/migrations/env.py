"""Alembic environment: migrations run on the connection ``cluster.migrations.upgrade`` hands over.

Fathom applies migrations itself at start (``cluster.db.init_schema``), inside its own lock
and transaction, so this environment never opens connections of its own.
"""

from __future__ import annotations

from alembic import context

from cluster import evaluation_tables, registry_tables, review_tables, stt_tables, webhook_tables  # noqa: F401  (their tables belong to the same metadata)
from cluster.tables import Base, UTCDateTime


def render_item(type_: str, obj, autogen_context):
    """Revisions stand alone: UTC timestamps are stored as timezone-aware DateTime."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
