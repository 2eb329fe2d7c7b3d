"""Alembic owns the schema: first use, upgrades from the first release, refusal of a database that
is behind, concurrent first use, one pipeline lock across hosts, and outputs others can read."""

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import copy_code, write_config

import datagen
from riskmonitor.config import PROJECT_DIR
from riskmonitor.store import db
from riskmonitor.web.app import create_app

FIRST_RELEASE = "f1e7d7f"  # the commit whose create_all made the databases in production before Alembic
FILE_RELEASE = "d52adb9"  # the last release that kept the data sets in files (ingesteddata/, testdata/)


def rows(url: str, tables=None) -> dict[str, list]:
    """Every row of every table of the first release's schema (its columns only), in id order."""
    engine = db.make_engine(url)
    with engine.connect() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        snapshot = {}
        for name in tables or sorted(set(FIRST_RELEASE_COLUMNS) & existing):
            table = db.metadata.tables[name]
            columns = [table.c[c] for c in FIRST_RELEASE_COLUMNS[name]]
            snapshot[name] = [tuple(r) for r in conn.execute(sa.select(*columns).order_by(table.c.id))]
    engine.dispose()
    return snapshot


FIRST_RELEASE_COLUMNS = {  # the tables and columns of revision 0001
    "runs": ["id", "hex", "command", "started_at", "finished_at", "status", "message"],
    "ingested_files": ["id", "file", "sha256", "size", "mtime_ns", "rows", "status", "error", "hex"],
    "f1": ["id", "f1_score", "hex", "model_hex", "dataset", "rows", "is_production"],
    "feature_stats": ["id", "feature", "mean", "median", "std", "hex"],
    "missing_data": ["id", "feature", "percentage", "hex"],
    "script_timing": ["id", "file", "timing", "hex"],
    "models": ["id", "hex", "path", "sha256", "f1_score", "train_rows", "deployed_at", "is_production"],
    "data_drift": ["id", "feature", "statistic", "p_value", "psi", "drifted", "hex"],
    "outdated_packages": ["id", "package", "installed", "latest", "hex"],
}


def environment(url: str) -> dict:
    return {**os.environ, "DATABASE_URL": url, "MPLBACKEND": "Agg"}


def as_script(prelude: str) -> str:
    """`python -c` code that runs prelude (the script's folder on the path, to patch its modules), then the
    script argv[1] as `python script` would (its folder first on the path)."""
    return (f"import os, runpy, sys, time; sys.path.insert(0, os.path.dirname(sys.argv[1])); {prelude}; "
            "sys.argv = sys.argv[1:]; sys.path[0] = os.path.dirname(sys.argv[0]); "
            "runpy.run_path(sys.argv[0], run_name='__main__')")


def script(root: Path, url: str, name: str, *args, check: bool = True):
    result = subprocess.run([sys.executable, str(root / name), *args], cwd="/", env=environment(url),
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def current_code(root: Path) -> Path:
    """The code of this checkout (with its migrations) in root, beside whatever data is there."""
    copy_code(root)
    write_config(root, outdated_timeout_seconds=0)
    return root


def first_release(root: Path, commit: str = FIRST_RELEASE) -> Path:
    """A release's own code and sample data, from git (by default the first release's)."""
    archive = subprocess.run(["git", "-C", str(PROJECT_DIR), "archive", commit], capture_output=True)
    assert archive.returncode == 0, (f"commit {commit} is not in this clone (a shallow clone? "
                                     f"fetch the history): {archive.stderr.decode()}")
    root.mkdir()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    write_config(root, outdated_timeout_seconds=0)
    return root


def test_the_code_expects_the_newest_revision():
    assert ScriptDirectory.from_config(db.alembic_config()).get_heads() == [db.SCHEMA_REVISION]


def test_first_use_builds_the_schema_of_the_metadata(database_url):
    engine = db.make_engine(database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        assert db.schema_revision(conn) == db.SCHEMA_REVISION
        # The migrations and schema.py describe one schema: nothing left for autogenerate to find.
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
    db.ensure_schema(engine)  # a second time: nothing to do
    engine.dispose()


def test_the_first_releases_database_upgrades_without_losing_a_row(tmp_path, database_url):
    root = first_release(tmp_path / "project")
    script(root, database_url, "fullprocess.py")  # deploys the first model
    datagen.generate(1_500, seed=5, flip=1.0).to_csv(root / "sourcedata" / "flipped.csv", index=False)
    (root / "sourcedata" / "broken.csv").write_text("not,a,valid,file\n")
    script(root, database_url, "fullprocess.py")  # drift, retrain, a quarantined file
    before = rows(database_url)
    assert len(before["runs"]) == 2
    for name in ("ingested_files", "data_drift", "feature_stats", "models", "f1"):
        assert before[name], name

    current_code(root)  # the new release is installed over the old one; its data stays
    refused = script(root, database_url, "fullprocess.py", check=False)
    assert refused.returncode == 1
    assert "run python dbsetup.py" in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback
    assert rows(database_url) == before

    upgraded = script(root, database_url, "dbsetup.py")
    assert f"upgraded from 0001 (the first release's schema, no revision recorded) to revision {db.SCHEMA_REVISION}" \
        in upgraded.stdout
    assert rows(database_url) == before
    assert "already at revision" in script(root, database_url, "dbsetup.py").stdout

    assert "imported" in script(root, database_url, "dbsetup.py", "--import-datasets").stdout
    # Its models are pickles, which this release never loads: converted once, on the word of trust.
    assert "2 model(s) are pickles of an earlier release" in script(root, database_url, "dbsetup.py").stdout
    converted = script(root, database_url, "dbsetup.py", "--convert-models", "--trust-stored-pickles")
    assert "converted 2 model(s) from pickles to plain numbers" in converted.stdout
    datagen.generate(1_000, seed=6).to_csv(root / "sourcedata" / "more.csv", index=False)
    tick = script(root, database_url, "fullprocess.py")
    after = rows(database_url)
    path, sha = (FIRST_RELEASE_COLUMNS["models"].index(c) for c in ("path", "sha256"))
    for old, new in zip(before["models"], after["models"], strict=False):  # only the model's bytes changed
        assert new[path] == f"models/model_{old[1]}.json"
        assert new[:path] + new[sha + 1:] == old[:path] + old[sha + 1:]
    before.pop("models")
    assert {name: table[:len(before[name])] for name, table in after.items() if name in before} == before
    assert after["runs"][-1][1] == tick.stdout.split()[0]
    assert after["runs"][-1][5] in db.WORK_STATUSES


def exported(path: Path) -> list[tuple]:
    """The rows of a data-set file, in order, as text."""
    import pandas as pd

    return [tuple(r) for r in pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False)]


def test_a_file_based_release_imports_its_data_sets_each_row_once_on_its_side(tmp_path, database_url):
    root = first_release(tmp_path / "project", FILE_RELEASE)
    write_config(root, outdated_timeout_seconds=0)
    script(root, database_url, "fullprocess.py")  # the sample data: the first model
    datagen.generate(1_500, seed=5, flip=1.0).to_csv(root / "sourcedata" / "flipped.csv", index=False)
    script(root, database_url, "fullprocess.py")  # drift: the data sets grow, on disk
    files = {side: exported(root / folder) for side, folder in ((False, "ingesteddata/finaldata.csv"),
                                                                (True, "testdata/testdata.csv"))}
    assert len(files[False]) + len(files[True]) == 9_500

    current_code(root)
    upgraded = script(root, database_url, "dbsetup.py")
    assert f"to revision {db.SCHEMA_REVISION}" in upgraded.stdout
    refused = script(root, database_url, "fullprocess.py", check=False)
    assert refused.returncode == 1
    assert "run `python dbsetup.py --import-datasets` on the host that holds ingesteddata/finaldata.csv" \
        in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr  # one line, no traceback

    imported = script(root, database_url, "dbsetup.py", "--import-datasets")
    assert f"imported {len(files[False])} training and {len(files[True])} held-out row(s)" in imported.stdout
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        stored = {side: [line for (line,) in conn.execute(sa.select(db.dataset_rows.c.line)
                                                            .where(db.dataset_rows.c.held_out == side)
                                                            .order_by(db.dataset_rows.c.id))]
                  for side in (False, True)}
    engine.dispose()
    for side, lines in stored.items():  # every row on its side, in its order, once
        assert [tuple(line.split(",")) for line in lines] == files[side]
    again = script(root, database_url, "dbsetup.py", "--import-datasets")  # idempotent: nothing doubled
    assert "imported 0 training and 0 held-out row(s)" in again.stdout

    for path in (root / "ingesteddata" / "finaldata.csv", root / "testdata" / "testdata.csv"):
        path.unlink()  # the database holds them now
    script(root, database_url, "dbsetup.py", "--convert-models", "--trust-stored-pickles")  # its pickled models
    datagen.generate(1_000, seed=6).to_csv(root / "sourcedata" / "more.csv", index=False)
    tick = script(root, database_url, "fullprocess.py")
    assert tick.stdout.split()[1] in db.WORK_STATUSES
    assert len(exported(root / "ingesteddata" / "finaldata.csv")) + len(exported(root / "testdata" / "testdata.csv")) \
        == 9_500 + 1_000


def answer_text(response) -> str:
    """The error of a JSON answer, or the text of the dashboard's empty-state page (HTML, for a browser)."""
    if response.mimetype == "text/html":
        return response.get_data(as_text=True)
    return response.json["error"]


def behind(url: str) -> None:
    """A database at the first revision, older than the code's."""
    from alembic import command

    engine = db.migration_engine(url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0001")
    engine.dispose()
    assert db.SCHEMA_REVISION != "0001"


def test_a_database_that_is_behind_is_refused_by_scripts_and_the_api(tmp_path, database_url):
    behind(database_url)
    root = current_code(tmp_path / "project")
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    for name in ("fullprocess.py", "ingestion.py", "training.py", "scoring.py", "deployment.py"):
        result = script(root, database_url, name, check=False)
        assert result.returncode == 1, name
        assert "python dbsetup.py" in result.stderr, name
        assert "Traceback" not in result.stderr, name
    from riskmonitor.config import load_config

    app = create_app(load_config(root, database_url=database_url))
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["database"] == "out of date"
    assert "python dbsetup.py" in health.json["error"]
    for path in ("/scoring", "/runs", "/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert "python dbsetup.py" in answer_text(response), path
    script(root, database_url, "dbsetup.py")
    assert client.get("/health").status_code == 200  # no restart needed
    assert client.get("/runs").json == {"data": []}
    app.extensions["drat"]["engine"].dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_web_process_never_sets_up_a_postgresql_database(tmp_path, database_url):
    """On PostgreSQL schema changes belong to dbsetup.py and the tick: the API on an empty database answers 503
    saying what to run, its dashboard shows that on its empty-state page, and it creates no table."""
    from riskmonitor.config import load_config

    app = create_app(load_config(current_code(tmp_path / "project"), database_url=database_url))
    client = app.test_client()
    expected = "the database has no tables yet: run python dbsetup.py"
    for path in ("/health", "/scoring", "/runs"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert expected in response.json["error"], path
    page = client.get("/")
    assert page.status_code == 503
    assert page.mimetype == "text/html"
    assert expected in page.get_data(as_text=True)
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    script(tmp_path / "project", database_url, "dbsetup.py")  # the release phase
    assert client.get("/runs").json == {"data": []}  # no restart needed
    app.extensions["drat"]["engine"].dispose()
    engine.dispose()


def test_a_database_of_a_newer_release_is_refused_in_one_line(tmp_path, database_url):
    """A database that a newer release upgraded (a revision this code has no migration for): every script,
    dbsetup.py included, and the API refuse it in one line, and nothing is changed."""
    engine = db.make_engine(database_url)
    db.ensure_schema(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(db.alembic_version).values(version_num="0099"))
    root = current_code(tmp_path / "project")
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    expected = f"the database is at revision 0099, newer than this code ({db.SCHEMA_REVISION}): install the newer release"
    for name in ("dbsetup.py", "fullprocess.py", "ingestion.py", "training.py"):
        result = script(root, database_url, name, check=False)
        assert result.returncode == 1, name
        assert expected in result.stderr, (name, result.stderr)
        assert "Traceback" not in result.stderr, (name, result.stderr)
        assert "run python dbsetup.py" not in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
    from riskmonitor.config import load_config

    app = create_app(load_config(root, database_url=database_url))
    client = app.test_client()
    for path in ("/health", "/scoring", "/"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert expected in answer_text(response), path
    with engine.connect() as conn:
        assert db.schema_revision(conn) == "0099"
        assert conn.execute(sa.select(sa.func.count()).select_from(db.runs)).scalar() == 0
    app.extensions["drat"]["engine"].dispose()
    engine.dispose()


def test_an_earlier_releases_pickled_model_is_converted_only_on_trust(tmp_path, database_url):
    """A model stored as the earlier release stored it (the pipeline pickled, with its sha256) is never loaded:
    a tick fails in one line and dbsetup.py says what to run; --convert-models without the word of trust is
    refused; with it, the model is plain numbers that predict exactly what the pickled pipeline did."""
    import pickle

    from riskmonitor.config import load_config
    from riskmonitor.model import convert
    from riskmonitor.model.training import train_model

    root = current_code(tmp_path / "project")
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    script(root, database_url, "fullprocess.py")
    config = load_config(root, database_url=database_url)
    engine = db.make_engine(database_url)
    pipeline = train_model(datagen.generate(2_000, seed=8), config)
    data = pickle.dumps(pipeline)  # the earlier release's model bytes
    with engine.begin() as conn:
        production = db.production_model(conn)
        sha = db.store_artifact(conn, "model", production.hex, data)
        conn.execute(db.models.update().where(db.models.c.hex == production.hex)
                     .values(sha256=sha, path=f"models/model_{production.hex}.pkl"))
    (root / "models" / f"model_{production.hex}.pkl").write_bytes(data)
    config.production_model.unlink()
    datagen.generate(300, seed=9).to_csv(root / "sourcedata" / "more.csv", index=False)

    tick = script(root, database_url, "fullprocess.py", check=False)
    assert tick.returncode == 1
    assert "pickles are never loaded: run python dbsetup.py --convert-models --trust-stored-pickles" in tick.stderr
    assert "Traceback" not in tick.stderr
    told = script(root, database_url, "dbsetup.py")
    assert "1 model(s) are pickles of an earlier release, which are never loaded" in told.stdout
    refused = script(root, database_url, "dbsetup.py", "--convert-models", check=False)
    assert refused.returncode == 2
    assert "--trust-stored-pickles" in refused.stderr
    with engine.connect() as conn:
        assert convert.stored_pickles(conn) == [production.hex]  # nothing converted without the word
    done = script(root, database_url, "dbsetup.py", "--convert-models", "--trust-stored-pickles")
    assert f"converted 1 model(s) from pickles to plain numbers: {production.hex}" in done.stdout
    with engine.connect() as conn:
        assert convert.stored_pickles(conn) == []
        row = db.get_model(conn, production.hex)
    assert row.path == f"models/model_{production.hex}.json"
    rows = datagen.generate(500, seed=10)[list(config.features)]
    client = create_app(config).test_client()
    answer = client.post("/prediction", json={"records": rows.to_dict("records")})
    assert answer.status_code == 200, answer.json
    assert answer.json["data"] == [int(x) for x in pipeline.predict(rows)]
    assert answer.json["probabilities"] == [round(float(p), 6) for p in pipeline.predict_proba(rows)[:, 1]]
    assert script(root, database_url, "fullprocess.py").returncode == 0  # the tick reads it too
    engine.dispose()


FIRST_USE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from riskmonitor.store import db
while time.time() < float(sys.argv[3]):  # start together
    time.sleep(0.001)
db.ensure_schema(db.make_engine(sys.argv[2]))
"""


@pytest.mark.parametrize("attempt", range(3))
def test_two_processes_setting_up_an_empty_database_at_once_both_succeed(database_url, attempt):
    import time

    start = str(time.time() + 3)
    processes = [subprocess.Popen([sys.executable, "-c", FIRST_USE, str(PROJECT_DIR), database_url, start],
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.communicate(timeout=60)[1], p.returncode)[::-1] for p in processes]
    assert results == [(0, ""), (0, "")]
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        assert db.schema_revision(conn) == db.SCHEMA_REVISION
        assert conn.execute(sa.select(sa.func.count()).select_from(db.alembic_version)).scalar() == 1
    engine.dispose()


def test_two_hosts_sharing_the_database_and_data_folders_never_tick_together(tmp_path, postgres_url):
    import time

    engine = db.make_engine(postgres_url)
    db.drop_tables(engine)  # a fresh database: the two ticks also race to set it up
    shared = tmp_path / "shared"  # one volume that both hosts mount
    (shared / "sourcedata").mkdir(parents=True)
    datagen.generate(30_000, seed=1).to_csv(shared / "sourcedata" / "clients.csv", index=False)
    folders = {"input_folder_path": "sourcedata", "output_folder_path": "ingesteddata", "test_data_path": "testdata",
               "output_model_path": "models", "prod_deployment_path": "production_deployment", "static_path": "static",
               "reports_path": "reports"}
    folders = {key: str(shared / name) for key, name in folders.items()}  # absolute paths in config.json
    hosts = [current_code(tmp_path / name) for name in ("host_a", "host_b")]
    for root in hosts:
        write_config(root, **folders)
    start = time.time() + 3
    go = as_script(f"time.sleep(max(0, {start} - time.time()))")  # both start at the same moment
    ticks = [subprocess.Popen([sys.executable, "-c", go, str(root / "fullprocess.py")], env=environment(postgres_url),
                              cwd="/", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for root in hosts]
    results = [(t.communicate(timeout=300), t.returncode) for t in ticks]
    results = [(code, out, err) for (out, err), code in results]
    assert [code for code, _, _ in results] == [0, 0], results
    with engine.connect() as conn:
        runs = conn.execute(sa.select(db.runs.c.hex, db.runs.c.status).order_by(db.runs.c.id)).all()
        files = conn.execute(sa.select(db.ingested_files.c.file)).scalars().all()
    engine.dispose()
    # Exactly one tick did the work; the other waited for nobody (or, had it come later, found nothing new).
    assert [status for _, status in runs if status != "no_new_data"] == ["deployed"], runs
    assert files == ["clients.csv"]
    busy = [err for _, _, err in results if "holds the pipeline lock" in err]
    assert len(busy) + len(runs) == 2
    import pandas as pd

    stored = pd.concat([pd.read_csv(shared / "ingesteddata" / "finaldata.csv"),
                        pd.read_csv(shared / "testdata" / "testdata.csv")])
    assert len(stored) == len(stored.drop_duplicates()) == 30_000


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_everything_the_pipeline_writes_is_readable_as_the_umask_allows(tmp_path, mask):
    root = current_code(tmp_path / "project")
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    url = f"sqlite:///{root / 'riskassessment.db'}"
    subprocess.run([sys.executable, "-c", as_script(f"os.umask({mask})"), str(root / "fullprocess.py")], cwd="/",
                   env=environment(url), check=True, capture_output=True, timeout=300)
    outputs = [p for folder in ("models", "production_deployment", "static", "reports", "ingesteddata", "testdata")
               for p in (root / folder).rglob("*")]
    assert len(outputs) >= 10
    assert (root / "riskassessment.db").stat().st_mode & 0o044 == 0o044 & ~mask  # SQLite's own 0644, less the umask
    for path in outputs:
        expected = (0o777 if path.is_dir() else 0o666) & ~mask
        assert oct(path.stat().st_mode & 0o777) == oct(expected), path.relative_to(root)


WITHOUT_ROOTS_POWERS = ("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--reuid=0")  # root that obeys file modes


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs root and setpriv (util-linux)")
def test_a_file_the_api_cannot_read_is_a_503_with_a_clear_message(sqlite_project, tmp_path, monkeypatch):
    """The API runs as a user that may not read what another user's tick wrote 0600 (as mkstemp used to).
    It reads models, charts and reports from the database; the data files remain, for file_name predictions."""
    import json
    import urllib.error
    import urllib.request

    from conftest import offline
    from servers import deploy, live_server

    offline(monkeypatch)
    engine = db.make_engine(sqlite_project.database_url)
    deploy(sqlite_project, engine)
    engine.dispose()
    os.chown(sqlite_project.testdata_csv, 65534, 65534)  # nobody's
    sqlite_project.testdata_csv.chmod(0o600)
    with live_server(sqlite_project, tmp_path / "server.log", prefix=WITHOUT_ROOTS_POWERS) as url:
        request = urllib.request.Request(url + "/prediction", data=b'{"file_name": "testdata/testdata.csv"}',  # noqa: S310
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)  # noqa: S310 (a local test server)
        body = answer.value.read().decode()
        assert answer.value.code == 503, body
        assert "cannot be read by the user the API runs as" in json.loads(body)["error"]
        assert str(sqlite_project.project_dir) not in body
