"""apicalls.py against the app running as a real server (python app.py) on a free port."""

import os
import subprocess
import sys

import pandas as pd
import pytest
import requests
from conftest import OUTDATED, offline
from servers import deploy, free_port, live_server

from riskmonitor.config import PROJECT_DIR


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


ORIGINAL_CLIENT = '''
import sys

import requests

URL = sys.argv[1]
prediction = requests.post(URL + "/prediction", json={"file_name": "testdata/testdata.csv"}).json()
scoring = requests.get(URL + "/scoring").json()
summary = requests.get(URL + "/summarystats").json()
diagnostics = requests.get(URL + "/diagnostics").json()
path = requests.get(URL + "/apireturns").text
lines = ["predictions " + " ".join(str(label) for label in prediction["data"]), f"f1 {scoring['data']}"]
lines += [f"stats {feature} {mean} {median} {std}" for feature, mean, median, std in summary["data"]]
lines += [f"missing {column} {fraction}" for column, fraction in diagnostics["missing_data"]]
lines += [f"timing {step} {seconds}" for step, seconds in diagnostics["execution_time"]]
with open(path, "w") as report:
    report.write("\\n".join(lines) + "\\n")
'''


def test_a_client_written_like_the_original_writes_its_report(project, engine, server, tmp_path, monkeypatch):
    offline(monkeypatch)
    deploy(project, engine)
    client = tmp_path / "original_apicalls.py"
    client.write_text(ORIGINAL_CLIENT)
    assert requests.get(server + "/apireturns", timeout=10).headers["Content-Type"].startswith("text/plain")
    # On the tick's host: run from the project directory, where testdata/ and models/ are.
    result = subprocess.run([sys.executable, str(client), server], cwd=project.project_dir, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert project.apireturns_path.relative_to(project.project_dir).as_posix() == "models/apireturns.txt"
    lines = project.apireturns_path.read_text().splitlines()
    assert len(lines[0].split()) - 1 == len(pd.read_csv(project.testdata_csv))
    assert set(lines[0].split()[1:]) <= {"0", "1"}
    assert float(lines[1].split()[1]) == requests.get(server + "/scoring", timeout=10).json()["data"]
    assert [line.split()[1] for line in lines if line.startswith("stats ")] == list(project.features)
    assert {line.split()[1] for line in lines if line.startswith("missing ")} >= set(project.features)
    assert {line.split()[1] for line in lines if line.startswith("timing ")} == {"ingestion.py", "training.py"}
    assert list(project.project_dir.glob("{*")) == []  # no file named after an error's JSON text


def test_the_token_is_never_sent_to_another_origin():
    """A redirect to another origin (here localhost instead of 127.0.0.1) is followed without the token; one
    to the same origin keeps it."""
    import http.server
    import threading

    from riskmonitor import client

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.headers["Host"].split(":")[0], self.path, self.headers.get("Authorization")))
            if self.path in ("/away", "/home"):
                target = f"http://localhost:{port}/landed" if self.path == "/away" else "/landed"
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client.call_json(f"http://127.0.0.1:{port}", "/away", token="s3cret")  # noqa: S106 (a test token)
        client.call_json(f"http://127.0.0.1:{port}", "/home", token="s3cret")  # noqa: S106
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("127.0.0.1", "/away", "Bearer s3cret"), ("localhost", "/landed", None),
                    ("127.0.0.1", "/home", "Bearer s3cret"), ("127.0.0.1", "/landed", "Bearer s3cret")]
