"""The database is the whole state: a backup taken as docs/backup.md says, restored into a fresh database,
holds every run, row, model and report, and a bare host ticks on from it."""

import io
import shutil
import sqlite3
import subprocess

import pytest
import sqlalchemy as sa
from conftest import add_csv, make_project, new_postgres_database

import datagen
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db, uploads

TABLES = ("runs", "dataset_rows", "dataset_stats", "dataset_state", "ingested_files", "models", "deployments",
          "artifacts", "decisions", "f1", "uploads", "upload_chunks")


def snapshot(url: str) -> dict[str, list]:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        found = {name: [tuple(r) for r in conn.execute(sa.select(db.metadata.tables[name])
                                                          .order_by(*db.metadata.tables[name].primary_key))]
                 for name in TABLES}
    engine.dispose()
    return found


def libpq(url: str) -> str:
    """The URL as pg_dump and pg_restore take it."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def restore_target(database_url, tmp_path):
    """An empty database to restore into: a SQLite file, or a fresh PostgreSQL database (dropped after)."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    with new_postgres_database("drat_restore") as url:
        yield url


def backup_and_restore(source: str, target: str, where) -> None:
    """What docs/backup.md tells an operator to run."""
    if source.startswith("sqlite"):
        with sqlite3.connect(sa.make_url(source).database) as live, sqlite3.connect(where / "backup.db") as copy:
            live.backup(copy)  # SQLite's online backup: consistent while ticks and the API go on
        shutil.copy(where / "backup.db", sa.make_url(target).database)
        return
    dump = where / "backup.dump"
    subprocess.run(["pg_dump", "--format=custom", "--no-owner", f"--file={dump}", libpq(source)], check=True)
    subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={libpq(target)}", str(dump)], check=True)


def test_a_backup_restores_everything_and_a_bare_host_ticks_on(project, engine, no_pip, restore_target, tmp_path):
    if project.database_url.startswith("postgresql") and not shutil.which("pg_dump"):
        pytest.fail("pg_dump is not installed (Debian package postgresql-client)")
    add_csv(project, "a.csv", rows=2_000, seed=1)
    assert run_tick(project, engine).status == "deployed"
    add_csv(project, "flipped.csv", rows=1_000, seed=5, flip=1.0)
    assert run_tick(project, engine).status in db.WORK_STATUSES
    waiting = datagen.generate(500, seed=9).to_csv(index=False).encode()  # an upload no tick has ingested yet
    assert uploads.store(engine, "waiting.csv", io.BytesIO(waiting), project.max_file_bytes, "backup test")[2]
    before = snapshot(project.database_url)
    assert all(before[name] for name in TABLES), {name: len(rows) for name, rows in before.items()}
    with engine.connect() as conn:
        assert {"model", "reference", "report", "confusion"} <= set(conn.execute(sa.select(db.artifacts.c.kind)).scalars())

    backup_and_restore(project.database_url, restore_target, tmp_path)
    assert snapshot(restore_target) == before  # runs, rows, models, reports: nothing lost

    host = make_project(tmp_path / "bare_host", restore_target)  # a new host: the database and nothing else
    add_csv(host, "more.csv", rows=1_000, seed=7)
    restored = db.make_engine(restore_target)
    tick = run_tick(host, restored)
    assert tick.status in db.WORK_STATUSES
    assert "2 file(s) ingested, 1500 new row(s)" in tick.summary  # the waiting upload came through the restore
    with restored.connect() as conn:  # data drift too: the production model's reference is in the database
        assert len(db.run_rows(conn, db.data_drift, tick.hex)) == len(host.features)
    after = snapshot(restore_target)
    restored.dispose()
    for name in ("runs", "dataset_rows", "ingested_files", "decisions"):  # rows only ever added
        assert after[name][:len(before[name])] == before[name], name
    assert len(after["dataset_rows"]) > len(before["dataset_rows"])  # the new rows joined the history
    assert len(host.finaldata_csv.read_text().splitlines()) - 1 + len(host.testdata_csv.read_text().splitlines()) - 1 \
        == len(after["dataset_rows"])  # the bare host's exports hold every row
