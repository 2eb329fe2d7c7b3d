"""Alerts: one JSON message to ALERT_WEBHOOK_URL, against a local HTTP server (http.server in a
thread on 127.0.0.1) that answers 200, answers 500, or never answers. Whatever it does, the
tick's status and exit code stay the same, and every attempt is recorded."""

import dataclasses
import http.server
import json
import threading
import time
from contextlib import contextmanager

import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import add_csv, offline

import deployment
import fullprocess
import training
from riskmonitor import alerts
from riskmonitor.config import load_config, run_script
from riskmonitor.reporting import report as report_module
from riskmonitor.store import db

WEBHOOK_PATH = "T0000/B0000/s3cr3t-token"  # the part of a webhook URL that must never be stored


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    offline(monkeypatch)  # no network for pip, no slow PDF (one test makes the report fail instead)


@contextmanager
def webhook(answer: str, requests: list | None = None):
    """A webhook on 127.0.0.1 that answers 200 ("ok"), 500 ("error"), 302 to another path ("redirect")
    or never ("silent"); yields its URL (with a secret path) and the JSON bodies it received. `requests`
    gets each request's (path, headers)."""
    received, release = [], threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            if requests is not None:
                requests.append((self.path, dict(self.headers)))
            if answer == "silent":
                release.wait(60)  # holds the connection without a byte of answer until the test ends
                return
            self.send_response({"ok": 200, "redirect": 302}.get(answer, 500))
            if answer == "redirect":
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/services/{WEBHOOK_PATH}", received
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def attempts(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(db.alert_attempts).order_by(db.alert_attempts.c.id)).all()


def run_main(monkeypatch, config, *argv, module=fullprocess) -> int:
    """A script's main() as cron runs it, on this project (the command's own load_config is patched)."""
    loaded = []
    monkeypatch.setattr(module, "load_config", lambda: loaded.append(config) or config)
    monkeypatch.setattr(module, "setup_logging", lambda: None)
    code = run_script(lambda: module.main(list(argv)) if module is not training else module.main())
    assert loaded == [config]  # the command ran on this project, not on the checkout's config.json
    return code


def test_a_deployment_and_drift_are_posted_with_the_record(project, engine, monkeypatch):
    with webhook("ok") as (url, received):
        config = dataclasses.replace(project, alert_webhook_url=url)
        add_csv(config, "a.csv", rows=2000, seed=1)
        assert run_main(monkeypatch, config) == 0
        add_csv(config, "flipped.csv", rows=1000, seed=5, flip=1.0)
        assert run_main(monkeypatch, config) == 0
    first, second = received
    with engine.connect() as conn:
        runs = db.recent_runs(conn, 2)[::-1]
    assert (first["event"], first["run"]) == ("deployed", runs[0].hex)
    assert first["decision"]["challenger_hex"] == runs[0].hex
    assert first["decision"]["deployed"] is True
    assert runs[0].hex in first["text"]
    assert second["event"].split(",")[0] == "drift"
    assert second["decision"]["model_drifted"] is True
    assert second["decision"]["new_f1"] < second["decision"]["drift_threshold"]
    recorded = attempts(engine)
    assert [(a.hex, a.attempt, a.status_code, a.error) for a in recorded] == [
        (runs[0].hex, 1, 200, None), (runs[1].hex, 1, 200, None)]
    assert {a.host for a in recorded} == {url.split("/")[2]}
    assert not any(WEBHOOK_PATH in str(tuple(a)) or "s3cr3t" in str(tuple(a)) for a in recorded)


def test_a_webhook_that_fails_is_retried_once_and_the_tick_is_unaffected(sqlite_project, monkeypatch):
    engine = db.make_engine(sqlite_project.database_url)
    with webhook("error") as (url, received):
        config = dataclasses.replace(sqlite_project, alert_webhook_url=url)
        add_csv(config, "a.csv", seed=1)
        assert run_main(monkeypatch, config) == 0
    with engine.connect() as conn:
        run = db.recent_runs(conn, 1)[0]
    assert run.status == "deployed"
    assert len(received) == 2  # the message and one retry
    assert [(a.attempt, a.status_code, a.error) for a in attempts(engine)] == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500")]
    engine.dispose()


def test_a_webhook_that_never_answers_costs_the_tick_two_timeouts_at_most(sqlite_project, monkeypatch):
    monkeypatch.setattr(alerts, "TIMEOUT_SECONDS", 0.5)
    engine = db.make_engine(sqlite_project.database_url)
    with webhook("silent") as (url, received):
        config = dataclasses.replace(sqlite_project, alert_webhook_url=url)
        add_csv(config, "a.csv", seed=1)
        assert run_main(monkeypatch, config) == 0
        started = time.monotonic()
        alerts.send(config, engine, None, "test", "a message nobody answers")
        took = time.monotonic() - started
    assert took < 2 * alerts.TIMEOUT_SECONDS + 1.0  # bounded: two attempts of one timeout each, and slack
    with engine.connect() as conn:
        assert db.recent_runs(conn, 1)[0].status == "deployed"
    recorded = attempts(engine)
    assert len(received) == 4
    assert [(a.event, a.attempt, a.status_code) for a in recorded] == [
        ("deployed", 1, None), ("deployed", 2, None), ("test", 1, None), ("test", 2, None)]
    assert all("timed out" in a.error for a in recorded), [a.error for a in recorded]
    assert all(a.duration < alerts.TIMEOUT_SECONDS + 0.5 for a in recorded)
    engine.dispose()


def test_a_failed_tick_and_a_failed_report_are_posted(sqlite_project, monkeypatch):
    engine = db.make_engine(sqlite_project.database_url)
    with webhook("ok") as (url, received):
        config = dataclasses.replace(sqlite_project, alert_webhook_url=url)
        path = add_csv(config, "one_class.csv", rows=50, seed=1)
        pd.read_csv(path).assign(exited=0).to_csv(path, index=False)
        assert run_main(monkeypatch, config) == 1
        path.unlink()

        def no_space(config, engine, run_hex):
            raise OSError("No space left on device")

        monkeypatch.setattr(report_module, "write_report", no_space)
        add_csv(config, "good.csv", seed=2)
        assert run_main(monkeypatch, config) == 1  # the report failed: exit 1, the deployment stands
    failed, deployed, report = received
    assert failed["event"] == "tick_failed"
    assert "needs both values of exited" in failed["text"]
    assert failed["decision"] is None
    assert deployed["event"] == "deployed"
    assert (report["event"], report["run"]) == ("report_failed", deployed["run"])
    assert "No space left on device" in report["text"]
    with engine.connect() as conn:
        run = db.get_run(conn, deployed["run"])
    assert (run.status, run.report_error) == ("deployed", "OSError: No space left on device")
    assert [a.event for a in attempts(engine)] == ["tick_failed", "deployed", "report_failed"]
    engine.dispose()


def test_a_deployment_by_hand_is_recorded_and_posted_with_its_reason(sqlite_project, monkeypatch):
    engine = db.make_engine(sqlite_project.database_url)
    with webhook("ok") as (url, received):
        config = dataclasses.replace(sqlite_project, alert_webhook_url=url)
        add_csv(config, "a.csv", seed=1)
        assert run_main(monkeypatch, config) == 0
        assert run_main(monkeypatch, config, module=training) == 0
        assert run_main(monkeypatch, config, "--reason", "ticket 42: roll forward", module=deployment) == 0
    message = received[-1]
    with engine.connect() as conn:
        production = db.production_model(conn)
        run = db.recent_runs(conn, 1)[0]
        record = conn.execute(sa.select(db.decisions).where(db.decisions.c.hex == run.hex)).one()
    assert (record.decided_by, record.reason, record.deployed) == ("deployment.py", "ticket 42: roll forward", True)
    assert record.challenger_hex == production.hex
    assert record.gate_rule == "by hand"
    assert (message["event"], message["run"]) == ("deployed", run.hex)
    assert message["decision"]["reason"] == "ticket 42: roll forward"
    assert "ticket 42" in message["text"]
    engine.dispose()


@pytest.fixture
def ready(sqlite_project):
    """An engine on the project's database with its schema."""
    engine = db.make_engine(sqlite_project.database_url)
    db.ensure_schema(engine)
    yield engine
    engine.dispose()


def test_without_a_webhook_nothing_is_sent_and_a_bad_url_is_recorded(sqlite_project, ready):
    engine = ready
    assert alerts.send(sqlite_project, engine, None, "test", "text") == []
    bad = dataclasses.replace(sqlite_project, alert_webhook_url="file:///etc/passwd")
    assert [a["error"] for a in alerts.send(bad, engine, None, "test", "text")] == ["ALERT_WEBHOOK_URL is not an http(s) URL"]
    assert [(a.host, a.status_code) for a in attempts(engine)] == [("-", None)]


def test_a_redirect_is_a_failed_attempt_and_is_never_followed(sqlite_project, ready):
    engine = ready
    requests = []
    with webhook("redirect", requests) as (url, received):
        sent = alerts.send(dataclasses.replace(sqlite_project, alert_webhook_url=url), engine, None, "test", "text")
    assert [(a["status_code"], a["error"]) for a in sent] == [(302, "HTTP 302 (a redirect, not followed)")] * 2
    assert [path for path, _ in requests] == [f"/services/{WEBHOOK_PATH}"] * 2  # never /elsewhere
    assert [(a.status_code, a.error is not None) for a in attempts(engine)] == [(302, True), (302, True)]


def test_credentials_in_the_webhook_url_are_sent_as_basic_authentication(sqlite_project, ready):
    import base64

    engine = ready
    requests = []
    with webhook("ok", requests) as (url, received):
        with_credentials = url.replace("http://", "http://alerts:p%40ss@")
        sent = alerts.send(dataclasses.replace(sqlite_project, alert_webhook_url=with_credentials), engine, None,
                           "test", "text")
    assert [a["status_code"] for a in sent] == [200]
    (path, headers), = requests
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"alerts:p@ss"
    assert [a.host for a in attempts(engine)] == [url.split("/")[2]]  # never the credentials


def test_the_webhook_url_comes_from_the_environment_or_env(sqlite_project, monkeypatch):
    root = sqlite_project.project_dir
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    assert load_config(root).alert_webhook_url is None
    (root / ".env").write_text("ALERT_WEBHOOK_URL=https://hooks.example.com/services/x\n")
    assert load_config(root).alert_webhook_url == "https://hooks.example.com/services/x"
    monkeypatch.setenv("ALERT_WEBHOOK_URL", "https://other.example.com/y")
    assert load_config(root).alert_webhook_url == "https://other.example.com/y"
