"""The app as the Procfile serves it: gunicorn with two workers follows a redeploy without a restart,
within serving.CHECK_SECONDS."""

import json
import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from conftest import offline
from servers import RECORD, deploy, live_server, redeploy

from riskmonitor.model import serving

WORKERS = 2


def predict(url: str) -> dict:
    request = urllib.request.Request(url + "/prediction", data=json.dumps({"records": [RECORD]}).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
        return json.load(response)


def workers_that_loaded(log_text: str, model_hex: str) -> set[str]:
    """Pids of the processes that logged loading a model (config.setup_logging tags lines name[pid])."""
    return set(re.findall(rf"serving\[(\d+)\]: loaded production model {model_hex}", log_text))


def test_every_gunicorn_worker_serves_the_redeployed_model(project, engine, tmp_path, monkeypatch):
    offline(monkeypatch)
    first = deploy(project, engine)
    log = tmp_path / "gunicorn.log"
    with live_server(project, log, gunicorn_workers=WORKERS) as url:
        assert {predict(url)["model"] for _ in range(20)} == {first.hex}
        new_hex = redeploy(project, engine)
        time.sleep(serving.CHECK_SECONDS)  # from then on, every answer of every worker is the new model's
        answers, deadline = [], time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=4 * WORKERS) as pool:
            # Concurrent requests: a sync worker answers one at a time, so they reach every worker.
            while len(workers_that_loaded(log.read_text(), new_hex)) < WORKERS and time.monotonic() < deadline:
                answers += pool.map(lambda _: predict(url), range(8 * WORKERS))
    workers = set(re.findall(r"Booting worker with pid: (\d+)", log.read_text()))
    assert len(workers) == WORKERS
    # --preload: the first model was loaded once, before the fork; the workers started with it.
    preloaded = workers_that_loaded(log.read_text(), first.hex)
    assert len(preloaded) == 1
    assert preloaded.isdisjoint(workers)
    assert workers_that_loaded(log.read_text(), new_hex) == workers
    assert {a["model"] for a in answers} == {new_hex}
    assert len({tuple(a["probabilities"]) for a in answers}) == 1


def test_the_errors_gunicorn_answers_itself_are_json(sqlite_project, tmp_path):
    """414 and 431 come from gunicorn before the app sees the request: JSON all the same (gunicorn.conf.py),
    and in /openapi.json."""
    import http.client

    with live_server(sqlite_project, tmp_path / "gunicorn.log", gunicorn_workers=1) as url:
        port = int(url.rsplit(":", 1)[1])
        answers = {}
        for name, path, headers in (("414", "/runs?" + "x" * 5000, {}),
                                    ("431", "/runs", {f"X-Header-{i}": "1" for i in range(120)})):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            answers[name] = (response.status, response.getheader("Content-Type"), json.loads(response.read()))
            conn.close()
        with urllib.request.urlopen(url + "/openapi.json", timeout=10) as response:  # noqa: S310 (a local test server)
            documented = json.load(response)["paths"]["/runs"]["get"]["responses"]
    assert answers["414"][:2] == (414, "application/json")
    assert answers["414"][2]["error"].startswith("uri too long: ")
    assert answers["431"][:2] == (431, "application/json")
    assert answers["431"][2]["error"].startswith("request header fields too large: ")
    assert {"414", "431"} <= documented.keys()
