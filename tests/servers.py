"""Helpers for the API tests: a deployed project, and the app running as a real server process."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import datagen
import db
import deployment
import diagnostics
import ingestion
import reporting
import storage
from config import PROJECT_DIR
from fullprocess import run_tick
from training import model_path, relative_to_project, train_model

OUTDATED = [{"package": "flask", "installed": "3.0.0", "latest": "3.1.3"}]
RECORD = {"lastmonth_activity": 12, "lastyear_activity": 150, "number_of_employees": 20}


def offline(monkeypatch, reports: bool = False) -> None:
    """Ticks without the network (pip list --outdated) and, unless asked for, without the slow plots and PDF."""
    monkeypatch.setattr(diagnostics, "outdated_packages", lambda config: [dict(p) for p in OUTDATED])
    if not reports:
        monkeypatch.setattr(reporting, "write_report", lambda config, engine, run_hex: None)


def add_csv(config, name: str, rows: int = 600, seed: int = 1, **options) -> Path:
    path = config.input_folder_path / name
    datagen.generate(rows, seed=seed, **options).to_csv(path, index=False)
    return path


def deploy(config, engine, seed: int = 1):
    """Run a tick on one new generated file; it deploys the first model."""
    add_csv(config, f"clients_{seed}.csv", seed=seed)
    return run_tick(config, engine)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (a local test server)
        return json.load(response)


@contextmanager
def live_server(config, log_path: Path, gunicorn_workers: int = 0, prefix: tuple[str, ...] = ()):
    """`python app.py` (or gunicorn, as the Procfile runs it) on a free port for a project;
    yields its URL once /health answers. prefix: a command that runs the server (setpriv ...)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "DATABASE_URL": config.database_url}
    command = [sys.executable, str(PROJECT_DIR / "app.py"), "--port", str(port), "--project-dir", str(config.project_dir)]
    if gunicorn_workers:
        command = [sys.executable, "-m", "gunicorn", "--workers", str(gunicorn_workers), "--bind", f"127.0.0.1:{port}",
                   f"app:create_app({str(config.project_dir)!r})"]
    with open(log_path, "wb") as log:
        server = subprocess.Popen([*prefix, *command], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_DIR)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(url + "/health")
                break
            except (urllib.error.URLError, ConnectionError):  # not listening yet
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{log_path.read_text()}") from None
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def redeploy(project, engine, hex_id: str = "b" * 16) -> str:
    """Train a clearly different model (labels inverted) and deploy it, as deployment.py would."""
    frame = ingestion.read_dataset(project.finaldata_csv, project)
    frame[project.label] = 1 - frame[project.label]
    path = model_path(project, hex_id)
    sha = storage.save_model(train_model(frame, project), path)
    with engine.begin() as conn:
        db.start_run(conn, hex_id, "deployment.py")
        db.record_model(conn, hex_id, relative_to_project(path, project), sha, 0.5, len(frame))
        deployment.deploy_model(conn, project, hex_id, hex_id)
        db.finish_run(conn, hex_id, "deployed", "redeployed by the test")
    return hex_id
