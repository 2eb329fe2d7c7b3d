"""The scripts as an operator runs them: in a copy of the project, as separate processes."""

import os
import re
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from conftest import copy_code, write_config

from riskmonitor.config import PROJECT_DIR

HEAVY = ("pandas", "sklearn", "matplotlib", "reportlab", "scipy")


def copy_project(root):
    """A copy of the project's code, config and sample data, as an operator's checkout."""
    copy_code(root)
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    write_config(root, outdated_timeout_seconds=0)  # pip asks the network: tested in test_diagnostics
    return root


def script_env(database_url: str) -> dict:
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"  # the wrapper's python3
    return {**os.environ, "DATABASE_URL": database_url, "MPLBACKEND": "Agg", "PATH": path}


@pytest.fixture
def checkout(tmp_path, database_url):
    """A copy of the project with DATABASE_URL set."""
    return copy_project(tmp_path / "checkout"), script_env(database_url)


def run(checkout, *args, check=True):
    root, env = checkout
    result = subprocess.run([sys.executable, *args], cwd="/", env=env, capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_a_fresh_checkout_deploys_then_finds_no_new_data_without_heavy_imports(checkout):
    root, _ = checkout
    first = run(checkout, str(root / "fullprocess.py"))
    assert first.stdout.split()[1] == "deployed"
    second = run(checkout, "-X", "importtime", str(root / "fullprocess.py"))
    assert second.stdout.split()[1] == "no_new_data"
    imported = {line.split("|")[-1].strip().split(".")[0] for line in second.stderr.splitlines() if "import time:" in line}
    assert not imported & set(HEAVY)
    assert not imported & {"numpy", "pyarrow"}  # what only new rows need


def test_a_failed_tick_exits_non_zero_and_says_why(checkout):
    root, _ = checkout
    for path in (root / "sourcedata").iterdir():
        path.unlink()
    (root / "sourcedata" / "one.csv").write_text("corporation,lastmonth_activity,lastyear_activity,"
                                                 "number_of_employees,exited\nab,1,2,3,1\ncd,4,5,6,1\n")
    result = run(checkout, str(root / "fullprocess.py"), check=False)
    assert result.returncode == 1
    assert re.search(r"ERROR fullprocess.py\[\d+\]: ValueError: cannot train", result.stderr)
    assert "Traceback" not in result.stderr


def test_each_step_runs_alone(checkout):
    root, _ = checkout
    assert "3 file(s) ingested" in run(checkout, str(root / "ingestion.py")).stdout
    trained = run(checkout, str(root / "training.py")).stdout
    assert "F1 on test data" in trained
    model_hex = trained.split()[1].rstrip(":")
    deployed = run(checkout, str(root / "deployment.py")).stdout
    assert f"model {model_hex} is now in production" in deployed
    assert f"production model {model_hex}: F1" in run(checkout, str(root / "scoring.py")).stdout
    assert "no_new_data" in run(checkout, str(root / "fullprocess.py")).stdout


def test_a_tick_after_ingestion_alone_trains_the_first_model(checkout):
    root, _ = checkout
    run(checkout, str(root / "ingestion.py"))
    assert run(checkout, str(root / "fullprocess.py")).stdout.split()[1] == "deployed"


def wait_for(condition, what: str, seconds: float = 30) -> None:
    """Poll condition until it holds; fail after `seconds`, saying what never happened."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.01)


def is_locked(path) -> bool:
    """True while another process holds flock on path (probed without waiting)."""
    import fcntl

    if not path.exists():
        return False
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False  # closing the file released the probe's own lock


@contextmanager
def held_by_another_process(path):
    """Another process holds flock on path for the block; entered once the lock cannot be taken."""
    code = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(300)"
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)])
    try:
        wait_for(lambda: is_locked(path), f"another process to lock {path.name}")
        yield
    finally:
        holder.kill()  # its lock goes with it
        holder.wait()


def test_a_tick_waits_for_nobody_while_the_pipeline_is_busy(checkout):
    import sqlalchemy as sa

    from riskmonitor.store import db

    root, env = checkout
    engine = db.make_engine(env["DATABASE_URL"])
    db.ensure_schema(engine)
    with held_by_another_process(root / ".pipeline.lock"):
        result = run(checkout, str(root / "fullprocess.py"))
    assert "holds the pipeline lock" in result.stderr
    with engine.connect() as conn:  # it wrote nothing: not even a run
        assert conn.execute(sa.select(sa.func.count()).select_from(db.runs)).scalar() == 0
    engine.dispose()
    assert not (root / "production_deployment").exists()
    assert not (root / "ingesteddata").exists()


def test_the_exports_are_rewritten_from_the_database(checkout):
    root, _ = checkout
    run(checkout, str(root / "fullprocess.py"))
    final = root / "ingesteddata" / "finaldata.csv"
    written = final.read_bytes()
    final.unlink()
    assert run(checkout, str(root / "fullprocess.py")).stdout.split()[1] == "no_new_data"
    assert final.read_bytes() == written  # the next tick rewrote it
    final.write_text("not what the database holds\n")
    exported = run(checkout, str(root / "ingestion.py"), "--export")
    assert exported.stdout.startswith("rewrote finaldata.csv (")
    assert final.read_bytes() == written


def test_scoring_before_any_deployment_says_so(checkout):
    root, _ = checkout
    run(checkout, str(root / "ingestion.py"))
    result = run(checkout, str(root / "scoring.py"), check=False)
    assert result.returncode != 0
    assert "no model is deployed yet" in result.stderr


def test_importing_any_module_has_no_side_effects(checkout):
    root, _ = checkout
    commands = sorted(path.stem for path in root.glob("*.py") if path.name != "gunicorn.conf.py")  # gunicorn reads it
    library = sorted(".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
                     for path in (root / "riskmonitor").rglob("*.py"))
    assert {"fullprocess", "app", "riskmonitor", "riskmonitor.pipeline.tick", "riskmonitor.web.app"} <= {*commands, *library}
    modules = commands + library
    before = sorted(p.name for p in root.iterdir())
    code = f"import sys; import {', '.join(modules)}; print(sorted(set(sys.modules) & set({HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=checkout[1], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in root.iterdir() if p.name != "__pycache__") == before
    heavy = eval(result.stdout)  # noqa: S307 - our own printed list
    assert set(heavy) <= {"pandas"}, "steps import scikit-learn, matplotlib, reportlab or scipy at import time"


def test_the_cron_wrapper_logs_and_never_overlaps(checkout):
    root, env = checkout
    wrapper = [str(root / "execute_fullprocess.sh")]
    result = subprocess.run(wrapper, cwd="/", env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    log = (root / "logs" / "fullprocess.log").read_text()
    assert "deployed" in log
    assert "tick ends with exit code 0" in log
    with held_by_another_process(root / ".pipeline.lock"):
        blocked = subprocess.run(wrapper, cwd="/", env=env, capture_output=True, text=True, timeout=60)
    assert blocked.returncode == 0
    added = (root / "logs" / "fullprocess.log").read_text()[len(log):]
    assert "holds the pipeline lock: this tick has nothing to do" in added
    assert "tick ends with exit code 0" in added


def _identity(path):
    """(inode, mtime) of a file, None if absent: every atomic replace gives the file a new inode."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _changed(path, before: dict) -> bool:
    """The file exists and is not the one seen before the tick (new, or replaced since)."""
    return _identity(path) not in (None, before.get(path))


# Moments of a tick, each seen from outside: the kill lands right after it.
MILESTONES = {
    "started": lambda root, engine, before: _running_runs(engine) != [],
    "ingested": lambda root, engine, before: _changed(root / "testdata" / "testdata.csv", before),
    "trained": lambda root, engine, before: any(_changed(p, before) for p in (root / "models").glob("model_*.json")),
    "deployed": lambda root, engine, before: _changed(root / "production_deployment" / "trainedmodel.json", before),
    "reporting": lambda root, engine, before: _changed(root / "static" / "f1.png", before),
}


def _running_runs(engine):
    import sqlalchemy as sa

    from riskmonitor.store import db

    with engine.connect() as conn:
        return conn.execute(sa.select(db.runs.c.hex).where(db.runs.c.status == "running")).all()


@pytest.mark.parametrize("milestone", MILESTONES)
def test_a_tick_killed_at_any_moment_loses_nothing(checkout, milestone):
    import pandas as pd
    import sqlalchemy as sa

    import datagen
    from riskmonitor.store import db, storage

    root, env = checkout
    run(checkout, str(root / "fullprocess.py"))
    for seed in (21, 22, 23):  # flipped labels: the tick ingests, detects drift, retrains and deploys
        datagen.generate(60_000, seed=seed, flip=1.0).to_csv(root / "sourcedata" / f"new_{seed}.csv", index=False)
    engine = db.make_engine(env["DATABASE_URL"])
    before = {path: _identity(path) for path in root.rglob("*") if path.is_file()}
    tick = subprocess.Popen([sys.executable, str(root / "fullprocess.py")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not MILESTONES[milestone](root, engine, before):
        assert tick.poll() is None, f"the tick ended before {milestone}"
        time.sleep(0.005)
    tick.kill()  # SIGKILL: no cleanup of any kind
    assert tick.wait() == -9, "the tick finished before the kill"
    run(checkout, str(root / "fullprocess.py"))  # the next tick finishes or redoes the work
    stored = pd.concat([pd.read_csv(root / "ingesteddata" / "finaldata.csv"), pd.read_csv(root / "testdata" / "testdata.csv")])
    sent = pd.concat([pd.read_csv(p) for p in sorted((root / "sourcedata").glob("*.csv"))]).drop_duplicates()
    assert len(stored) == len(stored.drop_duplicates()) == len(sent)
    with engine.connect() as conn:
        production = db.production_model(conn)
        files = conn.execute(sa.select(db.ingested_files.c.file)).scalars().all()
        work = conn.execute(sa.select(db.runs.c.hex).where(db.runs.c.status.in_(db.WORK_STATUSES))).scalars().all()
    assert _running_runs(engine) == []
    engine.dispose()
    assert sorted(files) == sorted(p.name for p in (root / "sourcedata").glob("*.csv"))
    assert storage.sha256_file(root / "production_deployment" / "trainedmodel.json") == production.sha256
    assert sorted(p.name for p in (root / "reports").glob("*.pdf")) == sorted(f"report_{h}.pdf" for h in work)


# --- one way to fail ---------------------------------------------------------------------------

SCRIPTS = ["fullprocess.py", "ingestion.py", "training.py", "scoring.py", "deployment.py", "diagnostics.py",
           "reporting.py", "dbsetup.py", "drop_tables.py"]


@pytest.fixture(params=["truncated sqlite", "unreachable postgresql"])
def broken_database(request, tmp_path):
    """(DATABASE_URL, what the one line must say): the first 1,000 bytes of a real SQLite
    database, or a PostgreSQL server that is not there (nothing listens on port 1)."""
    if request.param == "unreachable postgresql":
        return "postgresql://postgres@127.0.0.1:1/riskassessment", "Connection refused"
    from riskmonitor.store import db

    engine = db.make_engine(f"sqlite:///{tmp_path / 'real.db'}")
    db.ensure_schema(engine)
    engine.dispose()
    (tmp_path / "truncated.db").write_bytes((tmp_path / "real.db").read_bytes()[:1000])
    return f"sqlite:///{tmp_path / 'truncated.db'}", "database disk image is malformed"


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_broken_database_is_one_line_and_exit_code_1(tmp_path, broken_database, script):
    url, reason = broken_database
    root = copy_project(tmp_path / "checkout")
    command = [sys.executable, str(root / script), *(["--yes"] if script == "drop_tables.py" else [])]
    result = subprocess.run(command, cwd="/", env=script_env(url), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert re.search(rf"ERROR {re.escape(script)}\[\d+\]: ", result.stderr)
    assert reason in result.stderr


# --- steps by hand -------------------------------------------------------------------------------

EMPTY_STATES = ["No model is deployed yet", "no new data checked yet", "No plot yet", "No feature statistics",
                "No data drift measured yet", "No timings yet", "No report yet", "Nothing has run yet",
                "No quarantined files"]


def add_blanks(root):
    """A file with missing values in features and ids, so that missing data is measured, not only zeros."""
    import datagen

    frame = datagen.generate(500, seed=3).astype({"lastmonth_activity": "float64"})
    frame.loc[::7, "lastmonth_activity"] = None
    frame.loc[::11, "corporation"] = None
    frame.to_csv(root / "sourcedata" / "with_blanks.csv", index=False)


def what_it_shows(root, database_url):
    """/summarystats, /diagnostics' missing data, the dashboard's empty sections and every timing recorded."""
    from riskmonitor.config import load_config
    from riskmonitor.store import db
    from riskmonitor.web.app import create_app

    app = create_app(load_config(root, database_url=database_url))
    client = app.test_client()
    page = client.get("/").get_data(as_text=True)
    shown = {"summarystats": client.get("/summarystats").json["data"],
             "missing_data": client.get("/diagnostics").json["missing_data"],
             "empty sections": [state for state in EMPTY_STATES if state in page]}
    with app.extensions["drat"]["engine"].connect() as conn:
        shown["timings"] = [r.file for r in db.history(conn, db.script_timing)]
    app.extensions["drat"]["engine"].dispose()
    return shown


def test_steps_run_by_hand_leave_what_a_tick_leaves(tmp_path, database_url):
    import pandas as pd
    import sqlalchemy as sa

    from riskmonitor.store import db

    env = script_env(database_url)
    hand = copy_project(tmp_path / "hand")
    add_blanks(hand)
    for script in ("ingestion.py", "training.py", "deployment.py", "scoring.py", "reporting.py"):
        run((hand, env), str(hand / script))
    engine = db.make_engine(database_url)
    with engine.connect() as conn:
        scored = conn.execute(sa.select(db.f1).join(db.runs, db.runs.c.hex == db.f1.c.hex)
                              .where(db.runs.c.command == "scoring.py")).one()
    assert scored.rows == len(pd.read_csv(hand / "testdata" / "testdata.csv"))
    by_hand = what_it_shows(hand, database_url)
    db.drop_tables(engine)  # the same database server, empty again, for the tick's copy
    engine.dispose()
    tick = copy_project(tmp_path / "tick")
    add_blanks(tick)
    run((tick, env), str(tick / "fullprocess.py"))
    by_tick = what_it_shows(tick, database_url)
    assert by_hand == by_tick
    assert by_tick["empty sections"] == ["no new data checked yet", "No data drift measured yet", "No quarantined files"]
    assert dict(by_tick["missing_data"])["lastmonth_activity"] > 0
    assert by_tick["timings"] == ["ingestion.py", "training.py"]


# --- database scripts ----------------------------------------------------------------------------

def our_tables(database_url) -> set[str]:
    import sqlalchemy as sa

    from riskmonitor.store import db

    engine = db.make_engine(database_url)
    try:
        return set(db.metadata.tables) & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_dbsetup_creates_the_tables_and_can_run_again(checkout):
    from riskmonitor.store import db

    root, env = checkout
    for _ in range(2):
        result = run(checkout, str(root / "dbsetup.py"))
        assert result.stderr == ""
    assert our_tables(env["DATABASE_URL"]) == set(db.metadata.tables)


def drop_tables_answering(checkout, answer: str | None, *args):
    """drop_tables.py with answer typed on stdin, or (None) with stdin closed: no one to answer."""
    root, env = checkout
    stdin = {"stdin": subprocess.DEVNULL} if answer is None else {"input": answer}
    return subprocess.run([sys.executable, str(root / "drop_tables.py"), *args], cwd="/", env=env,
                          capture_output=True, text=True, timeout=120, **stdin)


def test_drop_tables_asks_and_drops_only_on_yes(checkout):
    from riskmonitor.store import db

    root, env = checkout
    run(checkout, str(root / "ingestion.py"))  # tables with rows in them
    everything = set(db.metadata.tables)
    declined = drop_tables_answering(checkout, "n\n")
    assert declined.returncode == 1
    assert "nothing dropped" in declined.stdout
    closed = drop_tables_answering(checkout, None)
    assert closed.returncode == 1
    assert len(closed.stderr.splitlines()) == 1, closed.stderr
    assert "no answer on standard input (no terminal): nothing dropped; pass --yes" in closed.stderr
    assert our_tables(env["DATABASE_URL"]) == everything
    assert "0 file(s) ingested" in run(checkout, str(root / "ingestion.py")).stdout  # the rows are still there
    dropped = drop_tables_answering(checkout, None, "--yes")
    assert dropped.returncode == 0, dropped.stderr
    assert our_tables(env["DATABASE_URL"]) == set()
