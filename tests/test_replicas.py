"""One database is the whole shared state: API replicas started from bare checkouts of the code on
another "host" (no data folders, no models/, static/ or reports/), given only DATABASE_URL, serve
everything a tick on the tick's host wrote to the same PostgreSQL database."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import add_csv, offline
from servers import RECORD, get_json, redeploy, replica
from test_dashboard_browser import browser, open_page  # noqa: F401 - the fixture is used below

from riskmonitor.config import PROJECT_DIR
from riskmonitor.model import serving
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db

CSV = "lastmonth_activity,lastyear_activity,number_of_employees\n12,150,20\n400,150,20\n"


def bare_checkout(root: Path) -> Path:
    """What a clone holds, less the sample data: the tracked files of the project, copied as they are now."""
    listed = subprocess.run(["git", "-C", str(PROJECT_DIR), "ls-files"], capture_output=True, text=True, check=True)
    for name in listed.stdout.splitlines():
        if name.startswith(("sourcedata/", "tests/", ".github/", "bench/")) or not (PROJECT_DIR / name).is_file():
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_DIR / name, root / name)
    assert not any((root / folder).exists() for folder in ("sourcedata", "models", "static", "reports", "testdata"))
    return root


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url + "/prediction", data=body, headers={"Content-Type": content_type})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (a local test server)
            return response.status, response.headers.get_content_type(), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read()


WEB_ROLE = "drat_web_test"


def web_role_url(tick_url: str, project_dir: Path) -> str:
    """The web process's URL: the role dbsetup.py --web-role makes (SELECT, and INSERT on the uploads)."""
    done = subprocess.run([sys.executable, str(PROJECT_DIR / "dbsetup.py"), "--web-role", WEB_ROLE], cwd=project_dir,
                          env={**os.environ, "DATABASE_URL": tick_url}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"the PostgreSQL role {WEB_ROLE}: SELECT on every table, INSERT on uploads, upload_chunks" in done.stdout
    return sa.make_url(tick_url).set(username=WEB_ROLE, password=None).render_as_string(hide_password=False)


@pytest.fixture
def replicas(tmp_path, postgres_url, database_url, project):
    """Two replicas, each gunicorn with two workers in its own bare checkout, on the tick's database, with the
    web role's rights only."""
    assert database_url == postgres_url  # the test is parametrized to PostgreSQL only
    web_url = web_role_url(postgres_url, project.project_dir)
    with ExitStack() as stack:
        yield [stack.enter_context(replica(bare_checkout(tmp_path / f"host_{i}"), web_url, tmp_path / f"replica_{i}.log"))
               for i in (1, 2)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_web_role_reads_and_adds_uploads_but_changes_nothing_else(project, engine):
    web = sa.create_engine(web_role_url(project.database_url, project.project_dir))
    with web.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.runs)).scalar() == 0  # it reads
    for statement in ("DELETE FROM runs", "UPDATE models SET is_production = true", "INSERT INTO runs (hex) VALUES ('x')",
                      "DROP TABLE runs", "CREATE TABLE planted (x int)", "ALTER TABLE artifacts ADD COLUMN y int",
                      "UPDATE artifacts SET data = ''"):
        with web.connect() as conn, pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
            conn.execute(sa.text(statement))
    with web.begin() as conn:  # what POST /batches does
        upload = conn.execute(db.metadata.tables["uploads"].insert().values(
            name="a.csv", sha256="0" * 64, bytes=1, received_at=db.now()).returning(sa.text("id"))).scalar_one()
        conn.execute(db.metadata.tables["upload_chunks"].insert().values(upload_id=upload, seq=0, data=b"x"))
    web.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_replicas_from_bare_checkouts_serve_what_the_tick_wrote(project, engine, replicas, monkeypatch, browser):  # noqa: F811
    for url in replicas:  # before the first tick
        assert post(url, json.dumps({"records": [RECORD]}).encode())[0] == 503
        assert fetch(url + "/scoring")[0] == 503
    offline(monkeypatch, reports=True)
    add_csv(project, "clients.csv", rows=2_000)
    tick = run_tick(project, engine)
    assert tick.status == "deployed"
    for url in replicas:
        status, by_records = post(url, json.dumps({"records": [RECORD, {**RECORD, "lastmonth_activity": 400}]}).encode())
        assert (status, by_records["model"]) == (200, tick.hex)
        assert post(url, CSV.encode(), "text/csv") == (200, by_records)
        status, answer = post(url, json.dumps({"file_name": "testdata/testdata.csv"}).encode())
        assert status == 404
        assert "no data folders" in answer["error"]
        assert get_json(url + "/scoring")["model"] == tick.hex
        assert [row[0] for row in get_json(url + "/summarystats")["data"]] == list(project.features)
        assert get_json(url + "/diagnostics")["missing_data"]
        assert get_json(url + "/runs")["data"][0]["hex"] == tick.hex
        status, content_type, pdf = fetch(url + "/report")
        assert (status, content_type) == (200, "application/pdf")
        assert pdf == (project.reports_path / f"report_{tick.hex}.pdf").read_bytes()
        assert fetch(url + "/")[0] == 200

    new_hex = redeploy(project, engine)  # a second deployment, as deployment.py makes it
    # Within one second, and more precisely: every request to any worker from CHECK_SECONDS after the
    # deployment on serves it (a wall-clock bound on the answer would only measure how busy this machine is).
    time.sleep(serving.CHECK_SECONDS)
    for url in replicas:
        for _ in range(8):  # each replica has two workers: several requests reach both
            assert post(url, json.dumps({"records": [RECORD]}).encode())[1]["model"] == new_hex

    page, problems = open_page(browser, replicas[1] + "/", 1400)
    images = page.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert len(images) == 3 + len(project.features)  # F1, confusion matrix, timings and one per feature
    assert [src for src, complete, width in images if not complete or width == 0] == []
    assert problems == []
    page.close()
