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

from conftest import add_csv, stored_frames

from riskmonitor.config import PROJECT_DIR
from riskmonitor.model import fitted
from riskmonitor.model.registry import deploy_model
from riskmonitor.model.training import model_path, record_model, relative_to_project, train_model
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db

RECORD = {"lastmonth_activity": 12, "lastyear_activity": 150, "number_of_employees": 20}


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
    command = [sys.executable, str(PROJECT_DIR / "app.py"), "--port", str(port), "--project-dir", str(config.project_dir)]
    if gunicorn_workers:
        command = gunicorn(port, gunicorn_workers, f"app:create_app({str(config.project_dir)!r})")
    with running_server([*prefix, *command], port, PROJECT_DIR, {"DATABASE_URL": config.database_url}, log_path) as url:
        yield url


def gunicorn(port: int, workers: int, app: str = "app:create_app()") -> list[str]:
    """The Procfile's web command: the app loaded once, then the workers forked."""
    return [sys.executable, "-m", "gunicorn", "--preload", "--workers", str(workers), "--bind", f"127.0.0.1:{port}", app]


@contextmanager
def replica(code_dir: Path, database_url: str, log_path: Path, workers: int = 2):
    """The API as a web host runs it: gunicorn in a checkout of the code, given only DATABASE_URL."""
    port = free_port()
    with running_server(gunicorn(port, workers), port, code_dir, {"DATABASE_URL": database_url}, log_path) as url:
        yield url


@contextmanager
def running_server(command: list[str], port: int, cwd: Path, env: dict, log_path: Path):
    """Run a server command; yield its URL once /health answers; stop it afterwards."""
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, cwd=cwd)
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
    frame, _ = stored_frames(project, engine)
    frame[project.label] = 1 - frame[project.label]
    path = model_path(project, hex_id)
    sha = fitted.save(fitted.FittedModel.of(train_model(frame, project)), path)
    with engine.begin() as conn:
        db.start_run(conn, hex_id, "deployment.py")
        record_model(conn, project, hex_id, relative_to_project(path, project), sha, 0.5, len(frame))
        deploy_model(conn, project, hex_id, hex_id, "deployment.py", "redeployed by the test")
        db.finish_run(conn, hex_id, "deployed", "redeployed by the test")
    return hex_id
