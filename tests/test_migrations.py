"""Schema migrations: existing databases upgrade in place and keep every row (SQLite and PostgreSQL).

Run in both passes (``make test`` and ``make test-postgres``). A database made before
migrations existed is the baseline revision without ``alembic_version``; every column of
every table is filled, the database upgraded by the code path every process takes at start
(``init_schema``), and each row read back unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, MetaData, String, Text, inspect, select, text

from cluster import migrations
from cluster.db import get_engine, init_schema, open_session
from cluster.tables import Base, TrainingJobLogEntry
from tests.conftest import _fresh_database

REPO = Path(__file__).resolve().parents[1]
STAMP = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.fixture
def fresh_url(tmp_path_factory):
    yield from _fresh_database(tmp_path_factory)


def sample(table: str, column, n: int):
    """A value of the column's type that a round trip could get wrong (unicode, JSON, time zones)."""
    t = column.type
    if table == "instance" and column.name == "id":
        return 1  # the row init_schema reads the signing secret from
    if isinstance(t, Boolean):
        return True
    if isinstance(t, (Integer, BigInteger)):
        return 7_000_000_000 + n if isinstance(t, BigInteger) else 70 + n
    if isinstance(t, Float):
        return 0.25 + n
    if isinstance(t, DateTime):
        return STAMP
    if isinstance(t, JSON):
        return {"kept": [n, "ünï", {"nested": True}]}
    if isinstance(t, String) and t.length == 36:
        return str(uuid.uuid4())
    if isinstance(t, (String, Text)):
        return f"{table}.{column.name} ü{n}"[: t.length or None]
    raise AssertionError(f"no sample for {table}.{column.name} of type {t!r}")


def fill_every_table(url: str) -> dict[str, dict]:
    """One row per table of the current schema, every column set, foreign keys pointing at their parents."""
    engine = get_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    rows: dict[str, dict] = {}
    with engine.begin() as conn:
        for table in meta.sorted_tables:
            if table.name == "alembic_version":
                continue
            row = {}
            for n, col in enumerate(table.columns):
                fk = next(iter(col.foreign_keys), None)
                row[col.name] = rows[fk.column.table.name][fk.column.name] if fk else sample(table.name, col, n)
            conn.execute(table.insert().values(row))
            rows[table.name] = row
    return rows


def read_rows(url: str, names) -> dict[str, dict]:
    engine = get_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        return {name: dict(conn.execute(select(meta.tables[name])).mappings().one()) for name in names}


def normalised(value):
    if isinstance(value, datetime):  # SQLite hands back naive UTC
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value.startswith("{"):  # JSON as text on some drivers
        import json

        return json.loads(value)
    return value


def revision(url: str) -> str | None:
    with get_engine(url).connect() as conn:
        return migrations.current_revision(conn)


@pytest.mark.parametrize("made_before_migrations", [True, False], ids=["unversioned", "at-baseline"])
def test_upgrade_keeps_every_row(fresh_url, made_before_migrations):
    engine = get_engine(fresh_url)
    migrations.upgrade(engine, migrations.BASELINE)
    if made_before_migrations:  # what create_all made before Fathom had migrations
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE alembic_version"))
    before = fill_every_table(fresh_url)
    assert not inspect(engine).has_table(TrainingJobLogEntry.__tablename__)

    instance = init_schema(fresh_url)

    assert revision(fresh_url) == migrations.head_revision()
    after = read_rows(fresh_url, before)
    for name, row in before.items():
        assert {k: normalised(after[name][k]) for k in row} == row, name
        added = set(after[name]) - set(row)  # columns of later revisions: empty on old rows
        assert all(after[name][k] is None for k in added), (name, {k: after[name][k] for k in added})
    assert instance.signing_secret == before["instance"]["signing_secret"]  # presigned URLs stay valid
    with open_session(fresh_url) as s:  # a table a later revision added works beside the old rows
        s.add(TrainingJobLogEntry(training_job_id=before["training_jobs"]["id"], level="info", message="after the upgrade"))
        s.commit()
        assert s.scalar(select(TrainingJobLogEntry.message)) == "after the upgrade"


def test_head_matches_the_tables_the_code_uses(fresh_url):
    init_schema(fresh_url)
    with get_engine(fresh_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"cluster/tables.py and the migrations disagree (add a revision): {diff}"


def test_processes_starting_at_once_migrate_once(fresh_url):
    """Ingress replicas, the dispatcher and jobs all call init_schema at start: concurrent starts must all succeed."""
    code = "import sys; from cluster.db import init_schema; print(init_schema(sys.argv[1]).signing_secret)"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, fresh_url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in results), [err[-2000:] for _, err, rc in results if rc]
    assert len({out.strip() for out, _, _ in results}) == 1  # one instance row, one secret
    assert revision(fresh_url) == migrations.head_revision()


def test_jobs_failed_by_their_files_alone_are_completed_after_the_upgrade(fresh_url):
    """Jobs the old status rule failed because every processed file failed accept files again."""
    engine = get_engine(fresh_url)
    migrations.upgrade(engine, "0002")
    rows = fill_every_table(fresh_url)
    job = rows["inference_jobs"]
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE inference_jobs SET status = 'failed', error_message = :m WHERE id = :id"),
            {"m": "every file failed; see each file's error_message", "id": job["id"]},
        )
        other = dict(job, id=str(uuid.uuid4()), status="failed", error_message="Model is archived and cannot be used for inference")
        meta = MetaData()
        meta.reflect(conn)
        conn.execute(meta.tables["inference_jobs"].insert().values(other))
    init_schema(fresh_url)
    with engine.connect() as conn:
        got = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, status, error_message FROM inference_jobs"))}
    assert got == {job["id"]: ("completed", None), other["id"]: ("failed", other["error_message"])}
