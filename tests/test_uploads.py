"""Batches that arrive without a folder: POST /batches stores them in the database for the next tick (on
SQLite and PostgreSQL), input_folder_path: null means uploads only, and max_file_mb bounds uploads and
folder files alike."""

import dataclasses
import io
import os

import pytest
import sqlalchemy as sa
from conftest import add_csv, make_project, write_config

import datagen
from riskmonitor.config import load_config
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db
from riskmonitor.web.app import create_app

TOKEN = "upload-token-1"  # noqa: S105 (a throwaway token)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _offline(no_reports):
    """No pip and no plots: the uploads are what is tested."""


@pytest.fixture
def uploads_only(project):
    """The project with input_folder_path: null (uploads only)."""
    write_config(project.project_dir, input_folder_path=None)
    return load_config(project.project_dir, database_url=project.database_url)


@pytest.fixture
def client(uploads_only, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    app = create_app(uploads_only)
    yield app.test_client()
    app.extensions["drat"]["engine"].dispose()


def upload(client, name: str, body: bytes, headers: dict | None = None, content_type: str = "text/csv"):
    return client.post("/batches", query_string={"name": name}, data=body, content_type=content_type,
                       headers=AUTH if headers is None else headers)


def batch(rows: int = 800, seed: int = 1, **options) -> bytes:
    return datagen.generate(rows, seed=seed, **options).to_csv(index=False).encode()


def table(engine, name: str) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(db.metadata.tables[name])).all()


def test_an_upload_is_ingested_by_the_next_tick_and_its_bytes_deleted(client, uploads_only, engine):
    first = batch()
    stored = upload(client, "2026-11.csv", first)
    assert stored.status_code == 201, stored.json
    assert stored.json == {"sha256": stored.json["sha256"], "name": "2026-11.csv", "bytes": len(first), "stored": True}
    import hashlib

    assert stored.json["sha256"] == hashlib.sha256(first).hexdigest()
    assert [len(c.data) for c in table(engine, "upload_chunks")] == [len(first)]  # waiting in the database
    again = upload(client, "renamed.csv", first)  # the same bytes under another name
    assert (again.status_code, again.json["stored"], again.json["sha256"]) == (200, False, stored.json["sha256"])

    tick = run_tick(uploads_only, engine)
    assert tick.status == "deployed"
    with engine.connect() as conn:
        files = conn.execute(sa.select(db.ingested_files)).all()
    assert [(f.file, f.status, f.rows, f.hex) for f in files] == [("2026-11.csv", "ingested", 800, tick.hex)]
    assert table(engine, "upload_chunks") == []  # its rows are stored: the bytes are gone
    (record,) = table(engine, "uploads")
    assert (record.name, record.sha256, record.bytes, record.rows, record.hex) == (
        "2026-11.csv", stored.json["sha256"], len(first), 800, tick.hex)
    assert record.who == "127.0.0.1"
    assert run_tick(uploads_only, engine).status == "no_new_data"
    assert upload(client, "2026-11.csv", first).status_code == 200  # seen: ingested already


def test_a_bad_upload_is_quarantined_like_a_file_and_keeps_its_bytes(client, uploads_only, engine):
    assert upload(client, "good.csv", batch()).status_code == 201
    assert upload(client, "no_label.csv", b"corporation,lastmonth_activity\nab,1\n").status_code == 201
    tick = run_tick(uploads_only, engine)
    assert tick.status == "deployed"
    assert "quarantined: no_label.csv (missing column(s): lastyear_activity, number_of_employees, exited)" in tick.summary
    kept = {u.name: u for u in table(engine, "uploads")}
    assert (kept["no_label.csv"].hex, kept["no_label.csv"].rows) == (tick.hex, None)
    chunks = table(engine, "upload_chunks")
    assert [c.upload_id for c in chunks] == [kept["no_label.csv"].id]  # nothing the user sent is lost


def test_an_upload_and_a_folder_file_are_one_batch_by_content(project, engine, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    app = create_app(project)
    client = app.test_client()
    path = add_csv(project, "in_the_folder.csv")
    assert upload(client, "uploaded.csv", batch(seed=2)).status_code == 201
    tick = run_tick(project, engine)
    assert [f.file for f in table(engine, "ingested_files")] == ["in_the_folder.csv", "uploaded.csv"]
    assert tick.status == "deployed"
    assert upload(client, "copy.csv", path.read_bytes()).status_code == 200  # read from the folder already
    app.extensions["drat"]["engine"].dispose()


def test_uploads_need_api_token(uploads_only, monkeypatch, engine):
    monkeypatch.delenv("API_TOKEN", raising=False)
    app = create_app(uploads_only)
    refused = upload(app.test_client(), "a.csv", batch(), headers={})
    assert refused.status_code == 403
    assert "API_TOKEN" in refused.json["error"]
    monkeypatch.setenv("API_TOKEN", TOKEN)
    locked = create_app(uploads_only).test_client()
    assert upload(locked, "a.csv", batch(), headers={}).status_code == 401
    assert upload(locked, "a.csv", batch(), headers={"Authorization": "Bearer wrong"}).status_code == 401
    app.extensions["drat"]["engine"].dispose()
    assert table(engine, "uploads") == []


@pytest.mark.parametrize(("name", "fragment"), [
    (None, "name is required"),
    ("", "name is required"),
    ("../../etc/cron.d/x.csv", "without a path separator"),
    ("sub\\x.csv", "without a path separator"),
    ("x.txt", "must end with .csv"),
    ("x.csv.exe", "must end with .csv"),
    ("line\nbreak.csv", "printable"),
    ("bell\x07.csv", "printable"),
    ("nul\x00.csv", "printable"),
    ("invoice\u202evsc.exe.csv", "printable"),  # a right-to-left override would disguise the name where shown
    ("x" * 252 + ".csv", "too long"),
])
def test_bad_names_get_400_without_echoing_them(client, engine, name, fragment):
    query = {} if name is None else {"name": name}
    response = client.post("/batches", query_string=query, data=batch(50), content_type="text/csv", headers=AUTH)
    assert response.status_code == 400, response.json
    assert fragment in response.json["error"]
    assert name is None or name == "" or name not in response.get_data(as_text=True)
    assert table(engine, "uploads") == []


def test_a_body_that_is_not_text_csv_gets_415_saying_how(client, engine):
    response = upload(client, "a.csv", batch(50), content_type="application/x-www-form-urlencoded")  # curl -d's default
    assert response.status_code == 415
    assert "-H 'Content-Type: text/csv' --data-binary @FILE.csv" in response.json["error"]
    assert table(engine, "uploads") == []


def test_a_hostile_name_is_stored_as_sent_and_shown_escaped(client, uploads_only, engine):
    name = "<img src=x onerror=alert(1)> & co.csv"
    assert upload(client, name, b"not,the,columns\n1,2,3\n").status_code == 201
    assert upload(client, "x" * 251 + ".csv", batch()).status_code == 201  # 255 characters: the longest name
    tick = run_tick(uploads_only, engine)
    assert tick.status == "deployed"
    page = client.get("/", headers=AUTH).get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; co.csv" in page
    assert "<img src=x" not in page
    assert {u.name for u in table(engine, "uploads")} == {name, "x" * 251 + ".csv"}


def test_an_upload_over_max_file_mb_gets_413_chunked_or_not(uploads_only, monkeypatch, engine):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    app = create_app(dataclasses.replace(uploads_only, max_file_mb=1))
    client = app.test_client()
    over = batch(80_000)
    assert len(over) > 2**20
    for response in (upload(client, "big.csv", over),
                     client.post("/batches?name=big.csv", input_stream=io.BytesIO(over),
                                 environ_overrides={"wsgi.input_terminated": True},
                                 headers={**AUTH, "Transfer-Encoding": "chunked", "Content-Type": "text/csv"})):
        assert response.status_code == 413
        assert response.json["error"] == "upload too large: the limit is max_file_mb (1 MB)"
    exactly = (b"corporation,lastmonth_activity,lastyear_activity,number_of_employees,exited\n"
               + b"a,1,2,3,0\n" * 200_000)[:2**20]
    assert upload(client, "one_mb.csv", exactly).status_code == 201  # the limit itself is allowed
    app.extensions["drat"]["engine"].dispose()
    assert [u.name for u in table(engine, "uploads")] == ["one_mb.csv"]


def test_uploads_are_not_bound_by_max_request_mb(uploads_only, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    app = create_app(dataclasses.replace(uploads_only, max_request_mb=1))
    body = batch(80_000)
    assert len(body) > 2**20
    assert upload(app.test_client(), "big.csv", body).status_code == 201
    app.extensions["drat"]["engine"].dispose()


def test_a_folder_file_over_max_file_mb_is_quarantined_unread(tmp_path):
    config = make_project(tmp_path / "p", f"sqlite:///{tmp_path / 'p.db'}")
    write_config(config.project_dir, max_file_mb=1)
    config = load_config(config.project_dir, database_url=config.database_url)
    add_csv(config, "fine.csv")
    with open(config.input_folder_path / "huge.csv", "wb") as handle:  # sparse: 3 MB of NUL bytes, never parsed
        handle.truncate(3 * 2**20)
    engine = db.make_engine(config.database_url)
    tick = run_tick(config, engine)
    assert tick.status == "deployed"
    records = {r.file: r for r in table(engine, "ingested_files")}
    assert records["huge.csv"].status == "quarantined"
    # Read, it would have been "not a text file (contains NUL bytes)".
    assert records["huge.csv"].error == "larger than max_file_mb (3.0 MB, the limit is 1 MB); not read"
    assert records["huge.csv"].size == 3 * 2**20
    assert run_tick(config, engine).status == "no_new_data"  # recorded once, by its name, size and time
    write_config(config.project_dir, max_file_mb=4)  # a higher limit: looked at again, and read
    config = load_config(config.project_dir, database_url=config.database_url)
    run_tick(config, engine)
    again = [r for r in table(engine, "ingested_files") if r.file == "huge.csv"]
    assert [r.error for r in again][-1] == "not a text file (contains NUL bytes)"
    engine.dispose()
    os.remove(config.input_folder_path / "huge.csv")


@pytest.mark.parametrize(("value", "fragment"), [
    (0, "max_file_mb must be a whole number of MB, at least 1"),
    ("5", "max_file_mb must be"),
    (True, "max_file_mb must be"),
])
def test_max_file_mb_is_checked(tmp_path, value, fragment):
    config = make_project(tmp_path / "p", f"sqlite:///{tmp_path / 'p.db'}")
    write_config(config.project_dir, max_file_mb=value)
    with pytest.raises(ValueError, match=fragment):
        load_config(config.project_dir)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    ("s3://bucket/prefix/", "s3://bucket/prefix"),
    ("s3://bucket", "s3://bucket"),
])
def test_input_folder_path_may_be_a_bucket_or_null(tmp_path, value, expected):
    config = make_project(tmp_path / "p", f"sqlite:///{tmp_path / 'p.db'}")
    write_config(config.project_dir, input_folder_path=value)
    loaded = load_config(config.project_dir)
    assert (loaded.input_folder_path, loaded.input_folder) == (expected, None)


@pytest.mark.parametrize("value", ["gs://bucket/x", "s3://", "", 7])
def test_other_input_folder_urls_are_refused(tmp_path, value):
    config = make_project(tmp_path / "p", f"sqlite:///{tmp_path / 'p.db'}")
    write_config(config.project_dir, input_folder_path=value)
    with pytest.raises(ValueError, match="input_folder_path must be a folder, an s3://"):
        load_config(config.project_dir)


def test_an_earlier_config_without_max_file_mb_loads(tmp_path):
    config = make_project(tmp_path / "p", f"sqlite:///{tmp_path / 'p.db'}")
    import json

    raw = json.loads((config.project_dir / "config.json").read_text())
    raw.pop("max_file_mb")
    (config.project_dir / "config.json").write_text(json.dumps(raw))
    assert load_config(config.project_dir).max_file_mb == 1024
