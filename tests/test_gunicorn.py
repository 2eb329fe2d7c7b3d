"""The app as the Procfile serves it: gunicorn with two workers follows a redeploy without a restart."""

import json
import urllib.request

from conftest import offline
from servers import RECORD, deploy, live_server, redeploy


def predict(url: str) -> dict:
    request = urllib.request.Request(url + "/prediction", data=json.dumps({"records": [RECORD]}).encode(),  # noqa: S310
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (a local test server)
        return json.load(response)


def test_every_gunicorn_worker_serves_the_redeployed_model(project, engine, tmp_path, monkeypatch):
    offline(monkeypatch)
    first = deploy(project, engine)
    log = tmp_path / "gunicorn.log"
    with live_server(project, log, gunicorn_workers=2) as url:
        assert {predict(url)["model"] for _ in range(20)} == {first.hex}
        new_hex = redeploy(project, engine)
        answers = [predict(url) for _ in range(40)]  # sequential requests, spread over both workers
    assert {a["model"] for a in answers} == {new_hex}
    assert len({tuple(a["probabilities"]) for a in answers}) == 1
    assert log.read_text().count(f"loaded production model {new_hex}") >= 1
