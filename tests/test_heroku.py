"""The Heroku shape, end to end, on PostgreSQL: three bare clones of the code (no data folder, no models,
nothing on disk from each other) share one fresh database and nothing else. A runs the release phase and
ticks, C is a web dyno (gunicorn) that receives the batches, B is a scheduler dyno that ticks later."""

import http.client
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pandas as pd
import sqlalchemy as sa
from conftest import new_postgres_database, write_config
from servers import free_port, gunicorn, running_server
from test_replicas import bare_checkout

import datagen
from riskmonitor.store import db

TOKEN = "heroku-token-5c1e"  # noqa: S105 (a throwaway token for a throwaway server)


def dyno(root, database_url: str) -> dict:
    """A dyno's environment: the config vars (DATABASE_URL as Heroku's add-on sets it), nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN")}
    return {**env, "DATABASE_URL": database_url.replace("postgresql+psycopg2://", "postgres://"), "MPLBACKEND": "Agg"}


def run(root, database_url: str, script: str, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, str(root / script), *args], cwd=root, env=dyno(root, database_url),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def upload(url: str, name: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/batches?name={urllib.parse.quote(name)}", data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "text/csv", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (the local test server)
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def upload_chunked(url: str, name: str, body: bytes) -> tuple[int, dict]:
    """Transfer-Encoding: chunked, no Content-Length: the size is known only as the body is read."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", f"/batches?name={name}", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                 headers={"Content-Type": "text/csv", "Authorization": f"Bearer {TOKEN}"}, encode_chunked=True)
    response = conn.getresponse()
    answer = response.status, json.loads(response.read())
    conn.close()
    return answer


def csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def exported_rows(root) -> pd.DataFrame:
    return pd.concat([pd.read_csv(root / "ingesteddata" / "finaldata.csv", dtype={"corporation": str}),
                      pd.read_csv(root / "testdata" / "testdata.csv", dtype={"corporation": str})])


def test_three_bare_clones_share_one_database_and_nothing_else(tmp_path, postgres_url):
    clones = {}
    for name in "ABC":
        clones[name] = bare_checkout(tmp_path / f"dyno_{name}")
        write_config(clones[name], input_folder_path=None, outdated_timeout_seconds=0, max_file_mb=2)
    first, second = datagen.generate(3_000, seed=1), datagen.generate(2_000, seed=2, flip=0.6)
    with new_postgres_database("drat_heroku") as url:
        run(clones["A"], url, "dbsetup.py")  # the release phase, before the dynos start
        run(clones["A"], url, "dbsetup.py", "--web-role", "drat_web_heroku")  # the web dyno only reads and uploads
        port = free_port()
        web_url = sa.make_url(url).set(username="drat_web_heroku", password=None).render_as_string(hide_password=False)
        web_env = {"DATABASE_URL": dyno(clones["C"], web_url)["DATABASE_URL"], "API_TOKEN": TOKEN}
        with running_server(gunicorn(port, 2), port, clones["C"], web_env, tmp_path / "web.log") as web:
            assert upload(web, "2026-10.csv", csv(first))[0] == 201
            a = run(clones["A"], url, "fullprocess.py").stdout.split()
            assert a[1] == "deployed", a

            status, stored = upload(web, "2026-11.csv", csv(second))
            assert (status, stored["stored"]) == (201, True)
            assert upload(web, "2026-10 again.csv", csv(first))[0] == 200  # the first batch's bytes: seen
            status, refused = upload_chunked(web, "huge.csv", b"x" * (3 * 2**20))  # over max_file_mb (2 MB)
            assert (status, refused["error"]) == (413, "upload too large: the limit is max_file_mb (2 MB)")

            b = run(clones["B"], url, "fullprocess.py").stdout.split()
            assert b[1] in ("deployed", "kept"), b  # 60% of the labels flipped: drift, and a retrain
            engine = db.make_engine(url)
            with engine.connect() as conn:
                decision = conn.execute(sa.select(db.decisions).where(db.decisions.c.hex == b[0])).one()
                state = conn.execute(sa.select(db.dataset_state)).one()
                waiting = conn.execute(sa.select(sa.func.count()).select_from(db.metadata.tables["upload_chunks"])).scalar()
                uploads = conn.execute(sa.select(db.metadata.tables["uploads"]).order_by(sa.text("id"))).all()
            engine.dispose()
            assert decision.model_drifted
            assert decision.champion_hex == a[0]  # B scored A's model, which it never had on disk
            assert decision.challenger_hex == b[0]
            distinct = len(pd.concat([first, second]).drop_duplicates())
            assert state.train_rows + state.test_rows == distinct  # the whole history, in the database
            exported = exported_rows(clones["B"])  # B's exports hold every row, A's batch included
            assert len(exported) == distinct
            key = list(first.columns)
            assert exported.sort_values(key).to_numpy().tolist() == \
                pd.concat([first, second]).drop_duplicates().sort_values(key).to_numpy().tolist()
            assert waiting == 0  # both uploads' rows are stored: their bytes are gone
            assert [(u.name, u.rows, u.hex) for u in uploads] == [("2026-10.csv", 3_000, a[0]), ("2026-11.csv", 2_000, b[0])]

            again = run(clones["A"], url, "fullprocess.py").stdout.split()
            assert again[1] == "no_new_data", again

            with urllib.request.urlopen(urllib.request.Request(  # noqa: S310 (the local test server)
                    f"{web}/runs", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=10) as response:
                runs = json.load(response)["data"]
            assert [r["hex"] for r in runs[:3]] == [again[0], b[0], a[0]]
    for name, root in clones.items():  # nothing shared on disk: no folder to read, and C never ticked
        assert not (root / "sourcedata").exists(), name
    assert not (clones["C"] / "ingesteddata").exists()
