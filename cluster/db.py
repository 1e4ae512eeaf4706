"""Engine, sessions and schema set-up for the metadata database.

SQLite (the embedded default) runs in WAL mode with a busy timeout, so the ingress,
the dispatcher, Ray Data tasks and training jobs can write from separate processes.
PostgreSQL uses the same code.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cluster import migrations
from cluster.tables import Instance

SCHEMA_VERSION = 1
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Connections per process: routes hand theirs back before awaiting a model, so this bounds the
# threads that touch the database at once (anyio's pool has 40), not the requests in flight.
POOL_SIZE = 10
POOL_OVERFLOW = 20


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """One engine (connection pool) per URL per process."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


@lru_cache(maxsize=8)
def _session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """A session committed on success and rolled back on error."""
    session = _session_factory(url)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def open_session(url: str) -> Session:
    return _session_factory(url)()


_MIGRATED: set[str] = set()  # URLs this process has brought to the head revision


def init_schema(url: str) -> Instance:
    """Apply pending migrations (once per process) and make the instance row (idempotent, safe to race)."""
    if url not in _MIGRATED:
        migrations.upgrade(get_engine(url))
        _MIGRATED.add(url)
    with session_scope(url) as s:
        inst = s.scalar(select(Instance).where(Instance.id == 1))
        if inst is None:
            try:
                with s.begin_nested():
                    inst = Instance(id=1, schema_version=SCHEMA_VERSION, signing_secret=secrets.token_hex(32))
                    s.add(inst)
            except IntegrityError:
                inst = s.scalar(select(Instance).where(Instance.id == 1))
        return inst


def signing_secret(url: str) -> bytes:
    return init_schema(url).signing_secret.encode()
