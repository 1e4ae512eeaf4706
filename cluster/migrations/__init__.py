"""Schema migrations (Alembic), applied at start by ``cluster.db.init_schema``.

Every process that touches the database calls it (ingress replicas, the dispatcher, Ray
jobs), so an upgrade runs under a lock: a PostgreSQL advisory lock held by the migrating
transaction, a file lock beside a SQLite database. A database made before migrations
existed (tables, no ``alembic_version``) holds exactly the baseline schema: it is stamped
at the baseline, then upgraded, keeping its rows.

New revision after changing ``cluster/tables.py``, ``cluster/stt_tables.py`` or ``cluster/registry_tables.py``::

    python -m cluster.migrations revision -m "what changed"
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

MIGRATIONS_DIR = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema before migrations: what create_all made
PG_LOCK_ID = 0x46415448  # "FATH": the advisory lock every migrating process takes


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    path = engine.url.database
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``, one process at a time; a no-op when it is there."""
    sqlite = engine.dialect.name == "sqlite"
    with _sqlite_file_lock(engine) if sqlite else contextlib.nullcontext(), engine.connect() as conn:
        with conn.begin():
            if not sqlite:
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_LOCK_ID})
            ctx = MigrationContext.configure(conn)
            if ctx.get_current_revision() is None and inspect(conn).has_table("organizations"):
                ctx.stamp(ScriptDirectory.from_config(alembic_config()), BASELINE)
            command.upgrade(alembic_config(conn), revision)
