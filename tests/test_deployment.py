"""Models and their deployments: deployment.py --list, GET /models and the dashboard agree with the
database after two deployments and a rollback by hand, which a running API serves at once."""

import json
import subprocess
import sys
import time
import urllib.request

import pytest
import sqlalchemy as sa
from servers import RECORD, get_json, live_server
from test_scripts import checkout, run  # noqa: F401 (the fixture: a copy of the project run as processes)

from riskmonitor.config import load_config
from riskmonitor.model import registry, serving
from riskmonitor.store import db
from riskmonitor.web.api import timestamp

REASON = "model B mislabels the March clients"


def predict(url: str) -> dict:
    request = urllib.request.Request(url + "/prediction", data=json.dumps({"records": [RECORD]}).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
        return json.load(response)


def database_state(config) -> tuple[list, list]:
    """The models rows (newest first) and the deployments rows (oldest first), read directly."""
    engine = db.make_engine(config.database_url)
    with engine.connect() as conn:
        models = conn.execute(sa.select(db.models).order_by(db.models.c.id.desc())).all()
        log = conn.execute(sa.select(db.deployments).order_by(db.deployments.c.id)).all()
        runs = {r.hex: r for r in conn.execute(sa.select(db.runs)).all()}
    engine.dispose()
    return models, log, runs


def test_two_deployments_and_a_rollback_by_hand(checkout, tmp_path):  # noqa: F811 (the imported fixture)
    root, env = checkout
    config = load_config(root, database_url=env["DATABASE_URL"])
    run(checkout, str(root / "fullprocess.py"))  # model A, deployed by the tick
    run(checkout, str(root / "training.py"))  # model B, recorded
    run(checkout, str(root / "deployment.py"))  # B deployed by hand, no reason given
    models, _, _ = database_state(config)
    model_b, model_a = (m.hex for m in models)
    with live_server(config, tmp_path / "server.log") as url:
        assert predict(url)["model"] == model_b
        rollback = subprocess.run([sys.executable, str(root / "deployment.py"), "--model", model_a, "--reason", REASON],
                                  cwd="/", env=env, capture_output=True, text=True, timeout=120)
        assert rollback.returncode == 0, rollback.stderr
        time.sleep(serving.CHECK_SECONDS)  # a process checks production at most this often (within one second)
        assert predict(url)["model"] == model_a
        assert get_json(url + "/scoring")["model"] == model_a
        listed = get_json(url + "/models")
        with urllib.request.urlopen(url + "/", timeout=10) as response:  # noqa: S310 (a local test server)
            page = response.read().decode()
    printed = run(checkout, str(root / "deployment.py"), "--list").stdout
    models, log, runs = database_state(config)

    # The deployments log: A by the tick, B by hand, A again by hand with the reason given.
    assert [(d.model_hex, d.decided_by) for d in log] == [(model_a, "fullprocess.py"), (model_b, "deployment.py"),
                                                         (model_a, "deployment.py")]
    assert log[1].reason == "deployed by hand"
    assert log[2].reason == REASON
    rollback_run = runs[log[2].hex]
    assert (rollback_run.command, rollback_run.status) == ("deployment.py", "deployed")
    assert REASON in rollback_run.message

    # GET /models: every models row, newest first, with its periods in production.
    assert listed["production"] == model_a
    assert [m["hex"] for m in listed["data"]] == [m.hex for m in models]
    for shown, row in zip(listed["data"], models, strict=True):
        assert shown["train_rows"] == row.train_rows
        assert shown["f1_score"] == pytest.approx(row.f1_score)
        assert shown["in_production"] == row.is_production
        assert f"{row.train_rows:,} rows" in shown["trained_on"]
        assert shown["trained_at"] == timestamp(runs[row.hex].started_at)  # the run that trained it
    periods = {m["hex"]: m["periods"] for m in listed["data"]}
    assert [(p["decided_by"], p["reason"] == REASON, p["until"] is None) for p in periods[model_a]] == [
        ("fullprocess.py", False, False), ("deployment.py", True, True)]
    assert [p["decided_by"] for p in periods[model_b]] == ["deployment.py"]
    assert periods[model_a][0]["until"] == periods[model_b][0]["deployed_at"]  # B replaced A ...
    assert periods[model_b][0]["until"] == periods[model_a][1]["deployed_at"]  # ... until the rollback
    assert periods[model_a][1]["run"] == log[2].hex

    # deployment.py --list prints the same.
    lines = printed.splitlines()
    assert lines[-1] == f"* in production now: {model_a}"
    model_lines = [line for line in lines if line[2:18] in (model_a, model_b)]
    assert [line[2:18] for line in model_lines] == [m.hex for m in models]
    for line, row in zip(model_lines, models, strict=True):
        assert line.startswith("* ") == row.is_production
        assert f"{row.train_rows:,}" in line
        assert f"{row.f1_score:.4f}" in line
    assert sum("in production" in line and "deployed by" in line for line in lines) == 3
    assert f"deployed by deployment.py (run {log[2].hex}): {REASON}" in printed

    # The dashboard's models table.
    assert "<h2>Models</h2>" in page
    for row in models:
        assert row.hex in page
    assert REASON in page


def test_an_upgraded_database_lists_the_deployments_made_before_they_were_logged(database_url):
    from alembic import command

    engine = db.migration_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(db.alembic_config(conn), "0003")  # before the deployments table
        conn.execute(db.runs.insert(), [{"hex": h, "command": "fullprocess.py", "started_at": db.now(), "status": s}
                                        for h, s in (("a1", "deployed"), ("b2", "kept"))])
        conn.execute(db.models.insert(), [
            {"hex": "a1", "path": "models/model_a1.pkl", "sha256": "0" * 64, "f1_score": 0.7, "train_rows": 100,
             "deployed_at": db.now(), "is_production": True},
            {"hex": "b2", "path": "models/model_b2.pkl", "sha256": "1" * 64, "f1_score": 0.6, "train_rows": 200,
             "deployed_at": None, "is_production": False}])
    engine.dispose()
    assert db.upgrade(database_url)[1] == db.SCHEMA_REVISION
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        records = {r.hex: r for r in registry.list_models(conn)}
    engine.dispose()
    assert records["b2"].periods == ()
    (period,) = records["a1"].periods
    assert (period.decided_by, period.until, period.run) == ("unknown", None, "a1")
    assert "before deployments were logged" in period.reason
    assert records["a1"].in_production
