"""apicalls.py against the app running as a real server (python app.py) on a free port."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from servers import OUTDATED, deploy, free_port, live_server, offline

from config import PROJECT_DIR


def apicalls(config, *args, **env):
    command = [sys.executable, str(PROJECT_DIR / "apicalls.py"), "--project-dir", str(config.project_dir), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def assert_one_line_error(result, text: str) -> None:
    assert result.returncode == 1
    assert result.stderr.startswith("apicalls: ")
    assert text in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


@pytest.fixture
def server(project, tmp_path):
    with live_server(project, tmp_path / "server.log") as url:
        yield url


def test_apicalls_writes_apireturns_from_a_running_api(project, engine, server, monkeypatch):
    # Started before any deployment: the API answers 503 and apicalls says so in one line.
    assert_one_line_error(apicalls(project, "--url", server), "POST /prediction answered 503: no model is deployed yet")
    assert not project.apireturns_path.exists()
    offline(monkeypatch)
    tick = deploy(project, engine)  # the running server picks the new model up without a restart
    result = apicalls(project, API_URL=server)  # the URL from the environment this time
    assert result.returncode == 0, result.stderr
    text = project.apireturns_path.read_text()
    assert f"API returns of {server}" in text
    assert f"Predictions for testdata/testdata.csv (model {tick.hex})" in text
    assert f"model {tick.hex}: F1 0." in text
    for feature in project.features:
        assert f"\n{feature} " in text  # a row of the statistics and of the missing data tables
    assert "ingestion.py" in text
    assert "training.py" in text
    assert all(value in text for value in OUTDATED[0].values())
    assert f"{tick.hex}  deployed" in text  # the recent runs table
    rows = text.split("Predictions row by row")[1].strip().splitlines()[4:]
    assert len(rows) == len(pd.read_csv(project.testdata_csv))
    assert rows[0].split()[0] == "1"
    assert rows[0].split()[1] in ("0", "1")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_apicalls_when_the_api_is_down(project):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert_one_line_error(apicalls(project, "--url", url), f"cannot reach the API at {url}: Connection refused")
    assert not project.apireturns_path.exists()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_apicalls_sends_the_api_token(project, engine, tmp_path, monkeypatch):
    offline(monkeypatch)
    deploy(project, engine)
    monkeypatch.setenv("API_TOKEN", "token-of-the-server")  # the server reads it at startup
    with live_server(project, tmp_path / "server.log") as url:
        refused = apicalls(project, "--url", url, API_TOKEN="")
        wrong = apicalls(project, "--url", url, API_TOKEN="another-token")  # noqa: S106 (a test token)
        from_env = apicalls(project, "--url", url)
        project.apireturns_path.unlink()
        (project.project_dir / ".env").write_text("API_TOKEN=token-of-the-server\n")
        from_dotenv = apicalls(project, "--url", url, API_TOKEN="")
    for result in (refused, wrong):
        assert_one_line_error(result, "POST /prediction answered 401: authentication required")
    for result in (from_env, from_dotenv):
        assert result.returncode == 0, result.stderr
    assert "Predictions for testdata/testdata.csv" in project.apireturns_path.read_text()
