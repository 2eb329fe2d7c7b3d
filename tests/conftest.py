"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL server.

PostgreSQL: a fresh database per test session on TEST_POSTGRES_URL (default: the local
server with trust authentication). Unreachable: those tests are skipped, unless
REQUIRE_POSTGRES=1 (as in .ci/run), where they fail.
"""

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from riskmonitor.config import PROJECT_DIR, load_config, normalize_database_url
from riskmonitor.store import db

ADMIN_URL = normalize_database_url(os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))


@pytest.fixture(scope="session")
def postgres_url():
    """A database created for this test session and dropped after it."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"no PostgreSQL server reachable at {ADMIN_URL}")
    admin.dispose()
    with new_postgres_database("drat_test") as url:
        yield url


@contextmanager
def new_postgres_database(prefix: str):
    """A new database of the test server, named `prefix` and a random suffix; its URL, dropped after."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))  # a generated name, not input
    try:
        yield sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty database: a SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = db.make_engine(url)
    db.drop_tables(engine)
    engine.dispose()
    return url


def make_project(root: Path, database_url: str):
    """A project directory with the real config.json and an empty input folder."""
    root.mkdir()
    shutil.copy(PROJECT_DIR / "config.json", root / "config.json")
    write_config(root, outdated_timeout_seconds=0)  # pip asks the network: tested in test_diagnostics
    (root / "sourcedata").mkdir()
    return load_config(root, database_url=database_url)


@pytest.fixture
def project(tmp_path, database_url):
    """A temporary project on each database; on PostgreSQL with its schema, as the release phase (dbsetup.py)
    sets it up before a web process starts, since the web process never runs DDL there."""
    config = make_project(tmp_path / "project", database_url)
    if database_url.startswith("postgresql"):
        engine = db.make_engine(database_url)
        db.ensure_schema(engine)
        engine.dispose()
    return config


@pytest.fixture
def sqlite_project(tmp_path):
    """A temporary project for tests that do not depend on the database server."""
    return make_project(tmp_path / "project", f"sqlite:///{tmp_path / 'test.db'}")


@pytest.fixture
def engine(project):
    engine = db.make_engine(project.database_url)
    yield engine
    engine.dispose()


OUTDATED = [{"package": "flask", "installed": "3.0.0", "latest": "3.1.3"}]  # what the stub says pip says


def offline(monkeypatch, reports: bool = False) -> None:
    """Ticks with a fixed outdated-packages answer instead of waiting on pip and the network and,
    unless reports are asked for, without the plots and PDF, which take seconds to draw."""
    from riskmonitor.reporting import diagnostics, report

    def answer_at_once(config, engine):  # the check a tick starts in the background, done before it reads
        with engine.begin() as conn:
            db.record_package_check(conn, [dict(p) for p in OUTDATED])

    monkeypatch.setattr(diagnostics, "start_refresh", answer_at_once)
    if not reports:
        monkeypatch.setattr(report, "write_report", lambda config, engine, run_hex: None)


@pytest.fixture
def no_pip(monkeypatch):
    """Ticks that draw their plots and PDF but do not ask pip."""
    offline(monkeypatch, reports=True)


@pytest.fixture
def no_reports(monkeypatch):
    """Ticks that neither ask pip nor draw plots (tests/test_reporting.py draws them)."""
    offline(monkeypatch)


def add_csv(config, name: str, rows: int = 600, seed: int = 1, **options) -> Path:
    """A generated churn file (datagen.generate: seed, shift, flip) in the project's input folder."""
    import datagen

    path = config.input_folder_path / name
    datagen.generate(rows, seed=seed, **options).to_csv(path, index=False)
    return path


def write_config(root: Path, **changes) -> None:
    """Change keys of a project's config.json."""
    path = root / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))


CODE_FILES = ("config.json", "alembic.ini", "requirements.txt", "execute_fullprocess.sh")  # beside the commands
CODE_FOLDERS = ("riskmonitor", "migrations")


def copy_code(root: Path) -> Path:
    """This checkout's code in root, as an operator's copy of it: the commands, the riskmonitor package,
    the migrations and the files they read (over whatever is there already, data included)."""
    root.mkdir(parents=True, exist_ok=True)
    for path in [*PROJECT_DIR.glob("*.py"), *(PROJECT_DIR / name for name in CODE_FILES)]:
        shutil.copy(path, root / path.name)
    for folder in CODE_FOLDERS:
        shutil.copytree(PROJECT_DIR / folder, root / folder, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def store_rows(config, frame, engine=None):
    """Store rows in a project's data sets, as a run of ingestion.py would (in a transaction of their own,
    the exports brought up to date after it); the NewRows stored."""
    from riskmonitor.data import datasets, exports

    engine = engine or db.make_engine(config.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        read = datasets.state(conn)
        new = datasets.new_rows(conn, [frame], config)
    with engine.begin() as conn:
        datasets.commit(conn, config, new, "0" * 16, read)
    exports.update(config, engine)
    return new


def stored_frames(config, engine=None):
    """(training rows, held-out rows) of a project's data sets, as DataFrames read from the database."""
    from riskmonitor.data import datasets

    engine = engine or db.make_engine(config.database_url)
    with engine.connect() as conn:
        return datasets.frame(conn, config, False), datasets.frame(conn, config, True)
