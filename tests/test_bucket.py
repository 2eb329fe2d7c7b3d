"""input_folder_path as an s3:// URL: ticks, run as cron runs them, read new objects from a bucket on an
S3-compatible server (moto in server mode on 127.0.0.1, started by the test), and never change it."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from conftest import copy_code, write_config
from servers import free_port

import datagen
from riskmonitor.store import db

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",  # moto takes any
               "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """moto's S3 server on a free port of 127.0.0.1, for the tests of this module."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()  # noqa: S310 (the local test server)
            break
        except (urllib.error.URLError, ConnectionError):
            assert server.poll() is None, "moto's server did not start"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=10)
    log.close()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """An s3fs filesystem on the test server, with a new bucket; (filesystem, bucket, the ticks' environment)."""
    import fsspec

    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    bucket = f"batches-{uuid.uuid4().hex[:10]}"
    fs.mkdir(bucket)
    return fs, bucket, env


@pytest.fixture
def checkout(tmp_path, s3):
    """A bare copy of the code whose input folder is the bucket's prefix `incoming`, on SQLite."""
    fs, bucket, env = s3
    root = copy_code(tmp_path / "host")
    write_config(root, input_folder_path=f"s3://{bucket}/incoming", outdated_timeout_seconds=0, max_file_mb=1)
    return root, {**os.environ, **env, "DATABASE_URL": f"sqlite:///{root / 'risk.db'}", "MPLBACKEND": "Agg"}


def tick(checkout) -> subprocess.CompletedProcess:
    root, env = checkout
    return subprocess.run([sys.executable, str(root / "fullprocess.py")], cwd="/", env=env, capture_output=True,
                          text=True, timeout=300)


def files(checkout) -> list[tuple]:
    root, env = checkout
    engine = db.make_engine(env["DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.ingested_files.c.file, db.ingested_files.c.status, db.ingested_files.c.rows,
                                      db.ingested_files.c.error).order_by(db.ingested_files.c.id)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_ticks_read_new_objects_from_a_bucket_and_change_nothing(checkout, s3):
    fs, bucket, _ = s3
    first = datagen.generate(1_000, seed=1).to_csv(index=False).encode()
    objects = {"incoming/2026-11.csv": first,
               "incoming/notes.txt": b"not a batch",
               "incoming/.partial.csv": b"an upload in progress",
               "incoming/archive/old.csv": b"in a folder below the prefix: not watched",
               "elsewhere/other.csv": first}
    for key, data in objects.items():
        fs.pipe(f"{bucket}/{key}", data)

    done = tick(checkout)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "deployed", done.stdout
    assert files(checkout) == [("2026-11.csv", "ingested", 1_000, None)]
    root = checkout[0]
    exports = [root / "ingesteddata" / "finaldata.csv", root / "testdata" / "testdata.csv"]
    assert sum(len(path.read_text().splitlines()) for path in exports) == 1_000 + 2  # every row, and a header in each

    again = tick(checkout)
    assert again.stdout.split()[1] == "no_new_data", again.stdout + again.stderr

    fs.pipe(f"{bucket}/incoming/copy.csv", first)  # the same bytes under another name: not new
    fs.pipe(f"{bucket}/incoming/2026-12.csv", datagen.generate(500, seed=2).to_csv(index=False).encode())
    fs.pipe(f"{bucket}/incoming/broken.csv", b"no,label\n1,2\n")
    fs.pipe(f"{bucket}/incoming/huge.csv", b"x" * (2**20 + 1))  # over max_file_mb (1 MB here)
    third = tick(checkout)
    assert third.returncode == 0, third.stderr
    assert files(checkout)[1:] == [
        ("2026-12.csv", "ingested", 500, None),
        ("broken.csv", "quarantined", 0, "missing column(s): corporation, lastmonth_activity, lastyear_activity, "
                                         "number_of_employees, exited"),
        ("huge.csv", "quarantined", 0, "larger than max_file_mb (1.0 MB, the limit is 1 MB); not read")]
    assert tick(checkout).stdout.split()[1] == "no_new_data"

    fs.invalidate_cache()
    for key, data in objects.items():  # nothing in the bucket was moved, changed or deleted
        assert fs.cat_file(f"{bucket}/{key}") == data
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls(f"{bucket}/incoming", detail=False)) == [
        ".partial.csv", "2026-11.csv", "2026-12.csv", "archive", "broken.csv", "copy.csv", "huge.csv", "notes.txt"]


def test_an_empty_prefix_is_no_new_data(checkout):
    done = tick(checkout)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[1] == "no_new_data"


def test_a_missing_bucket_fails_the_tick_with_one_line(checkout):
    root, env = checkout
    write_config(root, input_folder_path="s3://no-such-bucket-here/incoming")
    failed = tick(checkout)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert lines[-1].endswith("input_folder_path: the bucket no-such-bucket-here does not exist "
                              "(or these credentials cannot see it)"), failed.stderr
    assert "Traceback" not in failed.stderr
