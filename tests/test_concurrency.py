"""Safe without the lock: ticks that run at the same time on PostgreSQL, as processes of two clones
that share one database, never lose or double a row, a file or a production model. The pipeline lock
only saves work; the commit's serialization point (datasets.commit) is the safety."""

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import copy_code, write_config
from test_migrations import as_script

import datagen
from riskmonitor.store import db

NO_LOCK = ("import contextlib, riskmonitor.store.storage as s; "
           "s.pipeline_lock = lambda *a, **k: contextlib.nullcontext(True)")  # the lock lost, or never taken


def clone(root, files: dict) -> object:
    """A bare clone of the code with its own input folder holding `files` (name: DataFrame)."""
    copy_code(root)
    write_config(root, outdated_timeout_seconds=0)
    (root / "sourcedata").mkdir()
    for name, frame in files.items():
        frame.to_csv(root / "sourcedata" / name, index=False)
    return root


def start(root, url: str, prelude: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", as_script(prelude), str(root / "fullprocess.py")], cwd="/",
                            env={**os.environ, "DATABASE_URL": url, "MPLBACKEND": "Agg"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=600)
    return process.returncode, out, err


def database(url: str) -> dict:
    engine = db.make_engine(url)
    with engine.connect() as conn:
        found = {
            "rows": conn.execute(sa.select(sa.func.count()).select_from(db.dataset_rows)).scalar(),
            "keys": conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(db.dataset_rows.c.k1, db.dataset_rows.c.k2).distinct().subquery())).scalar(),
            "files": conn.execute(sa.select(db.ingested_files.c.file, db.ingested_files.c.rows)
                                  .order_by(db.ingested_files.c.id)).all(),
            "production": conn.execute(sa.select(db.models.c.hex).where(db.models.c.is_production)).scalars().all(),
            "runs": conn.execute(sa.select(db.runs.c.hex, db.runs.c.status, db.runs.c.message)
                                 .order_by(db.runs.c.id)).all(),
            "state": conn.execute(sa.select(db.dataset_state)).one(),
        }
    engine.dispose()
    return found


def fresh(url: str) -> None:
    engine = db.make_engine(url)
    db.drop_tables(engine)
    engine.dispose()


@pytest.mark.parametrize("attempt", range(2))
def test_two_ticks_started_together_without_the_lock_store_everything_once(tmp_path, postgres_url, attempt):
    fresh(postgres_url)
    files = {"a.csv": datagen.generate(20_000, seed=1), "b.csv": datagen.generate(5_000, seed=2)}
    clones = [clone(tmp_path / name, files) for name in ("clone_a", "clone_b")]
    subprocess.run([sys.executable, str(clones[0] / "dbsetup.py")], env={**os.environ, "DATABASE_URL": postgres_url},
                   check=True, capture_output=True)
    at = time.time() + 4  # after both processes have imported everything
    ticks = [start(root, postgres_url, f"{NO_LOCK}; time.sleep(max(0, {at} - time.time()))") for root in clones]
    results = [finish(t) for t in ticks]
    assert [code for code, _, _ in results] == [0, 0], results  # the loser did nothing, and says so
    found = database(postgres_url)
    distinct = len(pd.concat(files.values()).drop_duplicates())
    assert found["rows"] == found["keys"] == distinct  # no row lost or doubled
    assert sorted(found["files"]) == [("a.csv", 20_000), ("b.csv", distinct - 20_000)]  # each file counted once
    assert len(found["production"]) == 1
    assert sorted(status for _, status, _ in found["runs"]) == ["deployed", "no_new_data"], found["runs"]
    lost = next(message for _, status, message in found["runs"] if status == "no_new_data")
    assert lost.startswith("another tick (on this host or another) committed first"), lost  # they overlapped
    assert found["state"].version == 1  # one commit moved the data sets on
    assert (found["state"].train_rows + found["state"].test_rows) == distinct
    assert sorted(p.name for root in clones for p in (root / "models").glob("model_*.json")) \
        == [f"model_{found['production'][0]}.json"]  # the loser left no model file behind


def test_a_tick_whose_lock_connection_is_killed_stores_once_and_exits_0(tmp_path, postgres_url):
    fresh(postgres_url)
    big = {"big.csv": datagen.generate(300_000, seed=3)}
    clones = [clone(tmp_path / name, big) for name in ("clone_a", "clone_b")]
    admin = db.make_engine(postgres_url)
    db.ensure_schema(admin)
    first = start(clones[0], postgres_url, "pass")
    key = db.PIPELINE_LOCK
    holder = None
    for _ in range(600):  # until tick A holds the advisory lock
        with admin.connect() as conn:
            holder = conn.execute(sa.text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                                          "AND classid = :hi AND objid = :lo"),
                                  {"hi": key >> 32, "lo": key & 0xFFFFFFFF}).scalar()
        if holder or first.poll() is not None:
            break
        time.sleep(0.05)
    assert holder, finish(first)
    with admin.connect() as conn:  # the server ends the lock's session; tick A does not notice
        assert conn.execute(sa.select(sa.func.pg_terminate_backend(holder))).scalar()
    second = start(clones[1], postgres_url, "pass")  # takes the lock A lost, and ingests the same file
    results = [finish(first), finish(second)]
    admin.dispose()
    assert [code for code, _, _ in results] == [0, 0], results  # A too, whatever happened to its lock
    found = database(postgres_url)
    assert found["rows"] == found["keys"] == len(big["big.csv"].drop_duplicates())
    assert [rows for _, rows in found["files"]] == [found["rows"]]  # the file counted once
    assert len(found["production"]) == 1
    assert sorted(status for _, status, _ in found["runs"]) == ["deployed", "no_new_data"], found["runs"]
    lost = next(message for _, status, message in found["runs"] if status == "no_new_data")
    assert lost.startswith("another tick (on this host or another) committed first"), lost  # they overlapped
    assert "pipeline lock's connection was lost" in results[0][2]  # A noticed only when it let go of the lock
