"""The API through Flask's test client, on SQLite and on PostgreSQL: answers, refusals, hot reload."""

import base64
import dataclasses
import io
import pickle
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import OUTDATED, add_csv, offline
from servers import RECORD, deploy, free_port, redeploy

from riskmonitor.model import fitted, serving
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.reporting import plots
from riskmonitor.store import db, storage
from riskmonitor.web import inputs
from riskmonitor.web.app import create_app

NO_MODEL = "no model is deployed yet"

@pytest.fixture(autouse=True)
def _offline(no_pip):
    """No test here asks pip; most also need no plots or PDF (no_reports), one draws them for real."""


@pytest.fixture
def app(project):
    app = create_app(project)
    yield app
    app.extensions["drat"]["engine"].dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def deployed(project, engine, no_reports):
    tick = deploy(project, engine)
    assert tick.status == "deployed"
    return tick




def predict(client, **body):
    return client.post("/prediction", json=body)


def assert_error(response, status: int, fragment: str = "", project=None) -> None:
    """A JSON {"error": ...} with that status, naming no server path."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    assert fragment in response.json["error"]
    if project is not None:
        assert str(project.project_dir) not in response.get_data(as_text=True)


def test_before_any_deployment(client, project):
    for response in (client.get("/scoring"), client.get("/summarystats"), predict(client, records=[RECORD])):
        assert_error(response, 503, NO_MODEL)
    health = client.get("/health").json
    assert health == {"status": "ok", "database": "ok", "model": None, "last_run": None}
    assert client.get("/runs").json == {"data": []}
    assert client.get("/diagnostics").json == {"missing_data": [], "execution_time": [], "outdated_packages": []}
    assert_error(client.get("/report"), 404, "no report yet")
    page = client.get("/")
    assert page.status_code == 200
    assert "No model is deployed yet" in page.get_data(as_text=True)


def test_prediction_of_a_data_file_matches_the_model(client, deployed, project):
    response = predict(client, file_name="testdata/testdata.csv")
    assert response.status_code == 200
    frame = pd.read_csv(project.testdata_csv)
    model = fitted.load(project.production_model, storage.sha256_file(project.production_model))
    assert response.json["model"] == deployed.hex
    assert response.json["data"] == [int(x) for x in model.predict(frame[list(project.features)])]
    expected = model.predict_proba(frame[list(project.features)])[:, 1]
    assert response.json["probabilities"] == pytest.approx(list(expected), abs=1e-6)


def test_prediction_of_records_and_of_a_csv_body(client, deployed, project):
    records = [RECORD, {**RECORD, "lastmonth_activity": 400, "corporation": "abcd", "exited": 0},
               {**RECORD, "number_of_employees": None}]  # a missing value is imputed, as in training
    by_records = predict(client, records=records)
    assert by_records.status_code == 200
    csv = "lastmonth_activity,lastyear_activity,number_of_employees\n12,150,20\n400,150,20\n12,150,\n"
    by_csv = client.post("/prediction", data=csv, content_type="text/csv")
    assert by_csv.status_code == 200
    assert by_csv.json == by_records.json
    assert len(by_csv.json["data"]) == 3
    assert all(0 <= p <= 1 for p in by_csv.json["probabilities"])


@pytest.mark.parametrize(("file_name", "status"), [
    ("../config.json", 400), ("testdata/../../config.json", 400), ("testdata/../testdata/testdata.csv", 400),
    ("..\\config.json", 400), ("/etc/passwd", 400), ("ABSOLUTE", 400), ("", 400),
    ("config.json", 403), ("riskassessment.db", 403), ("testdata/missing.csv", 404), ("testdata", 404),
])
def test_file_names_outside_the_data_folders_are_refused(client, deployed, project, monkeypatch, file_name, status):
    if file_name == "ABSOLUTE":  # even a data file, given by its absolute path
        file_name = str(project.testdata_csv)
    if status == 400:  # refused from the string alone, before the file system is touched
        def touched(*args, **kwargs):
            raise AssertionError("the file system was touched")
        monkeypatch.setattr(Path, "resolve", touched)
    assert_error(predict(client, file_name=file_name), status, project=project)


def test_symbolic_links_are_followed_and_refused_when_they_leave(client, deployed, project, tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "clients.csv").write_text("lastmonth_activity,lastyear_activity,number_of_employees\nTOPSECRET,1,2\n")
    (project.input_folder_path / "link.csv").symlink_to(secret / "clients.csv")
    (project.test_data_path / "linkdir").symlink_to(secret)
    (project.input_folder_path / "alias.csv").symlink_to(project.testdata_csv)  # stays inside: allowed
    opened = []
    read_data_file = inputs.read_data_file
    monkeypatch.setattr(inputs, "read_data_file", lambda path, limit: opened.append(path) or read_data_file(path, limit))
    for file_name in ("sourcedata/link.csv", "testdata/linkdir/clients.csv"):
        response = predict(client, file_name=file_name)
        assert_error(response, 403, "not inside the data folders", project)
        assert "TOPSECRET" not in response.get_data(as_text=True)
    assert opened == []
    assert predict(client, file_name="sourcedata/alias.csv").status_code == 200
    assert opened == [project.testdata_csv.resolve()]  # the link that stays inside is read, through the patch
    monkeypatch.undo()
    offline(monkeypatch)
    assert predict(client, file_name="sourcedata/alias.csv").status_code == 200


def test_a_data_file_over_the_request_limit_is_refused_unread(client, deployed, project, monkeypatch):
    """A sparse file of 2 GB (no disk used) is 413 without a byte read; the original client's
    testdata/testdata.csv, within the limit, keeps working."""
    huge = project.input_folder_path / "huge.csv"
    with open(huge, "wb") as handle:
        handle.truncate(2 * 1024**3)
    reads = []
    real_fdopen = inputs.os.fdopen

    class Probe:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def fileno(self):
            return self.handle.fileno()

        def read(self, *args):
            reads.append(args)
            return self.handle.read(*args)

    monkeypatch.setattr(inputs.os, "fdopen", lambda fd, mode: Probe(real_fdopen(fd, mode)))
    response = predict(client, file_name="sourcedata/huge.csv")
    assert_error(response, 413, "the data file is too large to predict on by file_name (2,048.0 MB, "
                                f"the limit is max_request_mb: {project.max_request_mb} MB)", project)
    assert reads == []  # refused by its size: not a byte read
    assert predict(client, file_name="testdata/testdata.csv").status_code == 200
    assert len(reads) == 1  # the file within the limit is read through the probe


@pytest.mark.parametrize(("body", "content_type", "status", "fragment"), [
    ('{"file_name": ', "application/json", 400, "not valid JSON"),
    ("[1, 2]", "application/json", 400, "either file_name or records"),
    ("{}", "application/json", 400, "either file_name or records"),
    ('{"file_name": "testdata/testdata.csv", "records": []}', "application/json", 400, "either file_name or records"),
    ('{"records": []}', "application/json", 400, "non-empty list"),
    ('{"records": {"lastmonth_activity": 1}}', "application/json", 400, "non-empty list"),
    ('{"file_name": 7}', "application/json", 400, "file_name must be"),
    ('{"file_name": "testdata/testdata.csv", "model": "abc"}', "application/json", 400, "and nothing else"),
    ("file_name=testdata/testdata.csv", "application/x-www-form-urlencoded", 415, "text/csv"),
    ("", "text/csv", 400, "empty"),
    ("\r}\x1bz", "text/csv", 400, "no rows"),  # found by schemathesis: a lone carriage return (a 500 before)
    ("\xff\xfe\x00binary", "text/csv", 400, "not UTF-8"),
    ("lastmonth_activity,lastyear_activity,number_of_employees\n", "text/csv", 400, "no rows"),
])
def test_malformed_requests(client, deployed, body, content_type, status, fragment):
    data = body.encode("latin-1")
    assert_error(client.post("/prediction", data=data, content_type=content_type), status, fragment)


@pytest.mark.parametrize(("record", "fragment"), [
    ({"lastmonth_activity": 1, "number_of_employees": 3}, "missing feature lastyear_activity (record 2)"),
    ({**RECORD, "number_of_employees": "many"}, "number_of_employees must be a number or null (record 2)"),
    ({**RECORD, "lastmonth_activity": True}, "lastmonth_activity must be a number or null (record 2)"),
    ({**RECORD, "lastmonth_activity": float("inf")}, "non-numeric or infinite value in column lastmonth_activity (record 2)"),
    ({**RECORD, "lastyear_activity": 10**400}, "lastyear_activity is out of range (record 2)"),
])
def test_missing_and_non_numeric_features_in_records(client, deployed, record, fragment):
    assert_error(predict(client, records=[RECORD, record]), 400, fragment)


def test_missing_and_non_numeric_features_in_csv(client, deployed, project):
    no_column = "lastmonth_activity,number_of_employees\n1,2\n"
    assert_error(client.post("/prediction", data=no_column, content_type="text/csv"), 400, "lastyear_activity")
    text = "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n4,SECRETVALUE,6\n"
    (project.input_folder_path / "bad.csv").write_text(text)
    for response in (client.post("/prediction", data=text, content_type="text/csv"),
                     predict(client, file_name="sourcedata/bad.csv")):
        assert_error(response, 400, "non-numeric or infinite value in column lastyear_activity (line 3)")
        assert "SECRETVALUE" not in response.get_data(as_text=True)  # no file content in an answer


def test_oversized_body_gets_413(project, deployed):
    app = create_app(dataclasses.replace(project, max_request_mb=1))
    body = "lastmonth_activity,lastyear_activity,number_of_employees\n" + "1,2,3\n" * 200_000
    response = app.test_client().post("/prediction", data=body, content_type="text/csv")
    app.extensions["drat"]["engine"].dispose()
    assert_error(response, 413, "limit is 1 MB")


def post_chunked(client, body: bytes, content_type: str):
    """A body sent with Transfer-Encoding: chunked (no Content-Length), as gunicorn and the dev server pass it on."""
    return client.post("/prediction", input_stream=io.BytesIO(body), environ_overrides={"wsgi.input_terminated": True},
                       headers={"Transfer-Encoding": "chunked", "Content-Type": content_type})


def test_a_chunked_body_over_the_limit_gets_413(project, deployed):
    app = create_app(dataclasses.replace(project, max_request_mb=1))
    client = app.test_client()
    csv = b"lastmonth_activity,lastyear_activity,number_of_employees\n" + b"1,2,3\n" * 200_000
    json_body = b'{"records": [' + b",".join([b'{"lastmonth_activity": 1}'] * 50_000) + b"]}"
    responses = [post_chunked(client, csv, "text/csv"), post_chunked(client, json_body, "application/json")]
    small = post_chunked(client, b'{"file_name": "testdata/testdata.csv"}', "application/json")
    app.extensions["drat"]["engine"].dispose()
    for response in responses:
        assert_error(response, 413, "limit is 1 MB")
    assert small.status_code == 200  # a chunked body under the limit is read whole


@pytest.mark.parametrize(("request_args", "status", "fragment"), [
    ({"json": {"file_name": "testdata/" + "a" * 5000}}, 400, "file_name is too long"),
    ({"json": {"file_name": "testdata/" + "a" * 300 + ".csv"}}, 404, "no such data file"),  # ENAMETOOLONG
    ({"json": {"file_name": "testdata/" + "a/" * 2100 + "x.csv"}}, 400, "file_name is too long"),
    ({"data": '{"records": ' + "[" * 100_000 + "]" * 100_000 + "}", "content_type": "application/json"},
     400, "nested too deeply"),
    ({"data": "[" * 3000 + "]" * 3000, "content_type": "application/json"}, 400, "nested too deeply"),
])
def test_requests_that_got_a_500_get_a_4xx(client, deployed, project, request_args, status, fragment):
    response = client.post("/prediction", **request_args)
    assert_error(response, status, fragment, project)
    assert len(response.get_data()) < 2000  # the answer never echoes a long name whole


def test_a_chart_name_too_long_for_the_file_system_is_404(client, project):
    for name in ("a" * 3000, "a" * 3000 + ".png", "a" * 250 + ".png"):
        assert_error(client.get(f"/charts/{name}"), 404, "", project)
        assert_error(client.get(f"/plots/{name}"), 404, "", project)


def test_every_error_is_json_without_details(client, monkeypatch, caplog):
    assert_error(client.get("/nowhere"), 404)
    not_allowed = client.get("/prediction")
    assert_error(not_allowed, 405)
    assert "POST" in not_allowed.headers["Allow"]
    assert_error(client.delete("/scoring"), 405)

    def broken(conn, limit):
        raise RuntimeError("boom in /secret/server/path")
    monkeypatch.setattr(db, "recent_runs", broken)
    response = client.get("/runs")
    assert response.json == {"error": "internal server error"}
    assert response.status_code == 500
    assert "secret" not in response.get_data(as_text=True)
    assert "boom in /secret/server/path" in caplog.text  # the traceback goes to the log


def test_scoring_summarystats_and_diagnostics(client, deployed, project, engine):
    scoring = client.get("/scoring").json
    with engine.connect() as conn:
        production = db.production_model(conn)
        stats = db.run_rows(conn, db.feature_stats, production.hex)
    assert scoring == {"data": pytest.approx(production.f1_score), "model": deployed.hex}
    summary = client.get("/summarystats").json
    assert summary["model"] == deployed.hex
    assert summary["data"] == [[s.feature, s.mean, s.median, s.std] for s in stats]
    assert [row[0] for row in summary["data"]] == list(project.features)
    diagnostics = client.get("/diagnostics").json
    assert {column for column, _ in diagnostics["missing_data"]} >= set(project.features)
    assert all(0 <= share <= 1 for _, share in diagnostics["missing_data"])
    assert {step for step, _ in diagnostics["execution_time"]} == {"ingestion.py", "training.py"}
    assert diagnostics["outdated_packages"] == [[p["package"], p["installed"], p["latest"]] for p in OUTDATED]


def test_runs_newest_first_with_a_limit(client, deployed, project, engine):
    later = run_tick(project, engine)
    assert [r["hex"] for r in client.get("/runs").json["data"]] == [later.hex, deployed.hex]
    newest = client.get("/runs?limit=1").json["data"]
    assert [(r["hex"], r["status"]) for r in newest] == [(later.hex, "no_new_data")]
    assert newest[0]["started_at"].endswith("+00:00")
    assert client.get("/runs?limit=100000").status_code == 200
    for bad in ("0", "-1", "x", "1.5"):
        assert_error(client.get(f"/runs?limit={bad}"), 400, "limit")


def test_decisions_newest_first_and_inside_each_run(client, deployed, project, engine):
    # Labels inverted: the production model drifts; 1,500 rows hold enough held-out rows to judge a challenger.
    add_csv(project, "flipped.csv", rows=1500, seed=5, flip=1.0)
    drifted = run_tick(project, engine)
    idle = run_tick(project, engine)
    records = client.get("/decisions").json["data"]
    assert [d["hex"] for d in records] == [drifted.hex, deployed.hex]  # the idle tick decided nothing
    latest, first = records
    assert (first["decided_by"], first["deployed"], first["champion_hex"]) == ("fullprocess.py", True, None)
    assert first["challenger_hex"] == deployed.hex
    assert latest["model_drifted"] is True
    assert latest["new_f1"] < latest["drift_threshold"]
    assert (latest["champion_hex"], latest["challenger_hex"]) == (deployed.hex, drifted.hex)
    assert latest["deployed"] is (drifted.status == "deployed")
    assert (latest["verdict"], latest["episode_outcome"]) == ("deployed", "deployed")
    assert isinstance(latest["episode"], int)
    assert latest["created_at"].endswith("+00:00")
    assert isinstance(latest["drifted_features"], list)
    assert [d["hex"] for d in client.get("/decisions?limit=1").json["data"]] == [drifted.hex]
    runs = {r["hex"]: r for r in client.get("/runs").json["data"]}
    assert runs[idle.hex]["decision"] is None
    assert runs[drifted.hex]["decision"] == latest
    for bad in ("0", "x"):
        assert_error(client.get(f"/decisions?limit={bad}"), 400, "limit")
    page = client.get("/").get_data(as_text=True)
    latest_card = page[page.index('id="latest-decision"'):page.index("Model performance")]
    assert drifted.hex in latest_card
    assert f"vs threshold {latest['drift_threshold']:.4f}" in latest_card


def test_health(client, deployed):
    health = client.get("/health").json
    assert health["status"] == "ok"
    assert health["database"] == "ok"
    assert health["model"]["hex"] == deployed.hex
    assert health["model"]["file"] == "ok"
    assert (health["last_run"]["hex"], health["last_run"]["status"]) == (deployed.hex, "deployed")


def test_unreachable_database_answers_503(sqlite_project, caplog):
    app = create_app(dataclasses.replace(sqlite_project, database_url="sqlite:////nonexistent-dir/risk.db"))
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json["status"] == "error"
    assert_error(client.get("/scoring"), 503, "database is unavailable")
    assert "nonexistent-dir" not in health.get_data(as_text=True)
    assert "database unreachable" in caplog.text


DATABASE_ROUTES = ["/health", "/", "/scoring", "/summarystats", "/diagnostics", "/runs", "/models"]


def assert_database_unavailable(client, fragment: str, paths=DATABASE_ROUTES) -> None:
    """Every route answers 503 with a JSON reason, no traceback and no server path."""
    responses = {path: client.get(path) for path in paths}
    responses["/prediction"] = predict(client, records=[RECORD])
    for path, response in responses.items():
        text = response.get_data(as_text=True)
        assert response.status_code == 503, (path, text)
        assert response.is_json, path
        assert fragment in response.json["error"], path
        assert "Traceback" not in text
        assert "/" not in response.json["error"]  # no server path, no URL
    assert responses["/health"].json["status"] == "error"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_truncated_sqlite_file_answers_503_everywhere(project, engine, deployed, caplog):
    client = create_app(project).test_client()
    assert client.get("/health").json["status"] == "ok"
    engine.dispose()
    database = Path(sa.make_url(project.database_url).database)
    database.write_bytes(database.read_bytes()[:1000])
    time.sleep(serving.CHECK_SECONDS)  # until then, a prediction is served by the model checked last
    assert_database_unavailable(client, "damaged or is not a database")
    assert "file is not a database" in caplog.text or "malformed" in caplog.text  # the details are logged
    restarted = create_app(project).test_client()  # a worker started on the damaged file starts, and says so
    assert_database_unavailable(restarted, "damaged or is not a database", [*DATABASE_ROUTES, "/charts/f1.png", "/report"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_unreachable_postgresql_answers_503_everywhere(project):
    url = sa.make_url(project.database_url).set(port=free_port()).render_as_string(hide_password=False)  # nothing listens
    client = create_app(dataclasses.replace(project, database_url=url)).test_client()
    assert_database_unavailable(client, "cannot be reached or opened", [*DATABASE_ROUTES, "/charts/f1.png", "/report"])


class Payload:
    """Unpickling this creates the marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_a_pickle_planted_with_its_hash_runs_nowhere(client, deployed, project, engine, tmp_path, caplog):
    """An attacker who can write to the database writes the payload and its sha256 alike: the API answers 503
    in one line, and a tick (whose model file is then restored from those bytes) fails in one line."""
    from conftest import add_csv

    from riskmonitor.pipeline.tick import run_tick

    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Payload(marker))
    sha = fitted.storage.sha256_bytes(payload)
    with engine.begin() as conn:
        conn.execute(db.artifacts.update().where(db.artifacts.c.kind == "model", db.artifacts.c.hex == deployed.hex)
                     .values(data=payload, sha256=sha))
        conn.execute(db.models.update().where(db.models.c.hex == deployed.hex).values(sha256=sha))
    response = predict(client, records=[RECORD])
    assert_error(response, 503, f"model {deployed.hex} is a pickle of an earlier release, and pickles are never "
                                "loaded: run python dbsetup.py --convert-models --trust-stored-pickles", project)
    assert "\n" not in response.json["error"]
    project.production_model.unlink()  # the tick restores it from the database's bytes
    from riskmonitor.model.training import model_path

    model_path(project, deployed.hex).unlink()
    add_csv(project, "more.csv", seed=9)
    with pytest.raises(fitted.StoredPickle):
        run_tick(project, engine)
    with engine.connect() as conn:
        run = db.recent_runs(conn, 1)[0]
    assert run.status == "failed"
    message = run.message
    assert "pickles are never loaded" in message
    assert "\n" not in message
    assert not marker.exists()


def test_a_pickle_planted_as_the_data_drift_reference_runs_nowhere(deployed, project, engine, tmp_path, caplog):
    from conftest import add_csv

    from riskmonitor.pipeline.tick import run_tick

    marker = tmp_path / "unpickled"
    with engine.begin() as conn:
        conn.execute(db.artifacts.update().where(db.artifacts.c.kind == "reference", db.artifacts.c.hex == deployed.hex)
                     .values(data=pickle.dumps(Payload(marker))))
    add_csv(project, "more.csv", seed=9)
    tick = run_tick(project, engine)
    assert tick.status in ("no_drift", "kept", "deployed"), tick.summary
    assert f"model {deployed.hex}: its data-drift reference is not a gzipped CSV (BadGzipFile)" in caplog.text
    assert not marker.exists()


def test_a_corrupted_model_row_is_refused_and_never_unpickled(client, deployed, project, engine, tmp_path, caplog):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(Payload(probe)))
    assert probe.exists()  # the payload works: loading it would leave the marker
    marker = tmp_path / "unpickled"
    with engine.begin() as conn:  # the API reads the model's bytes from the database, never from a file
        conn.execute(db.artifacts.update().where(db.artifacts.c.kind == "model", db.artifacts.c.hex == deployed.hex)
                     .values(data=pickle.dumps(Payload(marker))))
    assert_error(predict(client, records=[RECORD]), 503, f"model {deployed.hex} does not match its recorded sha256",
                 project)
    health = client.get("/health").json
    assert health["status"] == "degraded"
    assert health["model"]["file"] != "ok"
    assert not marker.exists()
    assert "refusing to serve the production model" in caplog.text


def test_a_redeployed_model_is_served_without_restart(client, deployed, project, engine):
    before = predict(client, records=[RECORD]).json
    assert before["model"] == deployed.hex
    assert client.get("/summarystats").json["model"] == deployed.hex
    new_hex = redeploy(project, engine)
    with engine.begin() as conn:  # the statistics that a tick deploying it would have recorded
        conn.execute(db.feature_stats.insert(), [{"feature": f, "mean": 1.0, "median": 2.0, "std": 3.0, "hex": new_hex}
                                                 for f in project.features])
    time.sleep(serving.CHECK_SECONDS)  # a process checks production at most this often (within one second)
    after = predict(client, records=[RECORD]).json
    assert after["model"] == new_hex
    assert after["probabilities"] != before["probabilities"]
    assert client.get("/scoring").json == {"data": 0.5, "model": new_hex}
    assert client.get("/summarystats").json == {"data": [[f, 1.0, 2.0, 3.0] for f in project.features], "model": new_hex}
    assert client.get("/health").json["model"]["hex"] == new_hex


def test_predictions_go_on_when_the_database_drops_the_connection_of_the_model_check(client, deployed, project, engine):
    """The model check keeps one connection across requests (serving.ModelCache): a database that closes
    it (a restart, a killed backend) costs that request a reconnect, not an error."""
    cache = client.application.extensions["drat"]["models"]
    cache.check_seconds = 0  # every request checks production: the connection is used by the next one
    assert predict(client, records=[RECORD]).json["model"] == deployed.hex
    if engine.dialect.name == "postgresql":
        pid = cache._connection.driver_connection.info.backend_pid
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    else:
        cache._connection.driver_connection.close()  # SQLite: a connection that fails on its next use
    response = predict(client, records=[RECORD])
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["model"] == deployed.hex
    assert predict(client, records=[RECORD]).json["model"] == deployed.hex  # on a new connection again


def test_dashboard_shows_runs_and_quarantined_files_escaped(client, deployed, project, engine):
    (project.input_folder_path / "x<b>y.csv").write_text("not,the,right,columns\n1,2,3,4\n")
    add_csv(project, "more.csv", seed=2)
    run_tick(project, engine)
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert deployed.hex in page
    assert "x&lt;b&gt;y.csv" in page
    assert "x<b>y.csv" not in page
    assert "missing column(s)" in page
    # Charts come from the database; the confusion matrix needs a report, not drawn in this test:
    # an empty state, not a broken image.
    assert page.count("No plot yet") == 1
    assert page.count("<img") == 2 + len(project.features)
    assert "No report yet" in page


def test_charts_are_drawn_from_the_database(client, deployed, project):
    page = client.get("/").get_data(as_text=True)
    for name in ("f1", "timing", *project.features):
        url = page.split(f'src="/charts/{name}.png?v=')[1].split('"')[0]
        with client.get(f"/charts/{name}.png?v={url}") as chart:
            assert chart.status_code == 200
            assert chart.mimetype == "image/png"
            assert chart.data.startswith(b"\x89PNG")
            assert chart.cache_control.max_age == 86400  # the version in the URL: cacheable
    assert not project.static_path.exists()  # nothing was read from (or written to) static/
    for name in ("nowhere", "..%2Fconfig.json", "f1.png%00", "confusionmatrix"):  # no report yet: no matrix
        assert_error(client.get(f"/charts/{name}.png"), 404)


def test_report_and_charts_of_a_real_tick(sqlite_project):
    engine = db.make_engine(sqlite_project.database_url)
    tick = deploy(sqlite_project, engine)
    engine.dispose()
    client = create_app(sqlite_project).test_client()
    with client.get("/report") as report:
        assert report.status_code == 200
        assert report.mimetype == "application/pdf"
        assert report.data.startswith(b"%PDF")
        assert (sqlite_project.reports_path / f"report_{tick.hex}.pdf").read_bytes() == report.data
    page = client.get("/").get_data(as_text=True)
    assert 'href="/report"' in page
    assert "No plot yet" not in page
    for name in plots.chart_files(sqlite_project.features):
        assert f'src="/charts/{name}.png?v=' in page
        with client.get(f"/charts/{name}.png") as chart:
            assert chart.mimetype == "image/png"


def test_tables_are_created_on_an_empty_database(project):
    app = create_app(project)
    with app.extensions["drat"]["engine"].connect() as conn:
        assert set(db.metadata.tables) <= set(sa.inspect(conn).get_table_names())
    app.extensions["drat"]["engine"].dispose()


# --- hardening (issue 11): one validator for CSV bodies, files and records -------------------------

@pytest.mark.parametrize(("body", "fragment"), [
    ("lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3,\n", "line 2 has 4 fields, the header has 3"),
    ("lastmonth_activity,lastyear_activity,number_of_employees\n1," + "9" * 400 + ",3\n",
     "non-numeric or infinite value in column lastyear_activity (line 2)"),
    ("lastmonth_activity,lastyear_activity,number_of_employees\nTrue,2,3\n",
     "non-numeric or infinite value in column lastmonth_activity (line 2)"),
])
def test_csv_bodies_are_validated_like_files(client, deployed, body, fragment):
    assert_error(client.post("/prediction", data=body, content_type="text/csv"), 400, fragment)


def test_health_reports_a_run_running_longer_than_the_time_limit(project, engine, deployed):
    import datetime as dt

    app = create_app(dataclasses.replace(project, tick_timeout_seconds=60))
    with engine.begin() as conn:
        db.start_run(conn, "feedfacefeedface", "fullprocess.py")
        conn.execute(db.runs.update().where(db.runs.c.hex == "feedfacefeedface")
                     .values(started_at=db.now() - dt.timedelta(seconds=61)))
    health = app.test_client().get("/health").json
    app.extensions["drat"]["engine"].dispose()
    assert health["status"] == "degraded"
    assert "feedfacefeedface has been running for" in health["stalled"]


TOKEN = "s3cret-token-for-tests"  # noqa: S105 (a test token)


def bearer(token: str = TOKEN) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(password: str = TOKEN, user: str = "anyone") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def every_route(app) -> list[tuple[str, str]]:
    """(method, url) of every route of the app, HEAD and OPTIONS aside."""
    urls = {"/charts/<name>.png": "/charts/f1.png"}
    return sorted((method, urls.get(rule.rule, rule.rule)) for rule in app.url_map.iter_rules()
                  for method in rule.methods - {"HEAD", "OPTIONS"})


def call(client, method: str, url: str, headers: dict):
    if method == "POST":
        return client.post(url, json={"records": [RECORD]}, headers=headers)
    return client.open(url, method=method, headers=headers)


@pytest.mark.parametrize("source", ["environment", ".env"])
def test_api_token_locks_every_route_but_health(project, deployed, monkeypatch, source):
    if source == "environment":
        monkeypatch.setenv("API_TOKEN", TOKEN)
    else:
        monkeypatch.delenv("API_TOKEN", raising=False)
        (project.project_dir / ".env").write_text(f"API_TOKEN={TOKEN}\n")
    app = create_app(project)
    client = app.test_client()
    routes = every_route(app)
    assert len(routes) >= 8
    for method, url in routes:
        if url == "/health":
            assert client.get(url).status_code == 200  # probes need no secret
            continue
        for headers in ({}, bearer("wrong"), bearer(TOKEN[:-1]), {"Authorization": TOKEN}, basic(user=TOKEN, password="")):
            response = call(client, method, url, headers)
            assert_error(response, 401, "authentication required")
            assert response.headers["WWW-Authenticate"]
        assert call(client, method, url, bearer()).status_code not in (401, 500), url
    app.extensions["drat"]["engine"].dispose()


def test_a_browser_opens_the_dashboard_with_http_basic(project, deployed, monkeypatch):
    monkeypatch.setenv("API_TOKEN", TOKEN)
    app = create_app(project)
    client = app.test_client()

    def status(url, headers):
        with client.get(url, headers=headers) as response:  # closes a file that send_file opened
            return response.status_code

    for url in ("/", "/charts/f1.png", "/report"):
        challenge = client.get(url)
        assert challenge.status_code == 401
        assert challenge.headers["WWW-Authenticate"].startswith('Basic realm="')  # the browser asks
        assert status(url, basic()) == (404 if url == "/report" else 200)  # no report is written in this test
        assert status(url, basic(user="")) == (404 if url == "/report" else 200)
        assert status(url, basic("wrong")) == 401
    with client.get("/charts/f1.png", headers=basic()) as chart:
        assert chart.data.startswith(b"\x89PNG")
    for url in ("/scoring", "/runs", "/diagnostics"):  # the JSON API takes the Bearer token only
        refused = client.get(url, headers=basic())
        assert_error(refused, 401, "authentication required")
        assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert client.get("/scoring", headers=bearer()).json["model"] == deployed.hex
    app.extensions["drat"]["engine"].dispose()


@pytest.mark.parametrize("empty", ["", "   "])
def test_no_api_token_means_open_and_says_so_once(project, deployed, monkeypatch, caplog, empty):
    monkeypatch.setenv("API_TOKEN", empty)  # empty (or blank) is unset
    with caplog.at_level("WARNING", logger="riskmonitor.web.app"):
        app = create_app(project)
    assert [r.getMessage() for r in caplog.records if "API_TOKEN" in r.getMessage()] == [
        "API_TOKEN is not set: the API is open to anyone who can reach it (uploads refused)"]
    client = app.test_client()
    for method, url in every_route(app):
        assert call(client, method, url, {}).status_code not in (401, 500), url
    app.extensions["drat"]["engine"].dispose()


@pytest.mark.parametrize("source", ["environment", ".env"])
def test_a_padded_token_is_the_token(project, deployed, monkeypatch, caplog, source):
    """Whitespace around the setting (a stray space in .env, a newline from a secrets file) and around the
    header's token is no part of it."""
    if source == "environment":
        monkeypatch.setenv("API_TOKEN", f"  {TOKEN}\n")
    else:
        monkeypatch.delenv("API_TOKEN", raising=False)
        (project.project_dir / ".env").write_text(f"API_TOKEN=' {TOKEN} '\n")
    with caplog.at_level("WARNING", logger="riskmonitor.web.app"):
        app = create_app(project)
    assert not [r for r in caplog.records if "API_TOKEN" in r.getMessage()]
    client = app.test_client()
    assert client.get("/scoring", headers={"Authorization": f"Bearer  {TOKEN} "}).status_code == 200
    assert client.get("/scoring", headers=bearer()).status_code == 200
    assert client.get("/scoring").status_code == 401
    app.extensions["drat"]["engine"].dispose()
