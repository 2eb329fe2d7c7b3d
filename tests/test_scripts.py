"""The scripts as an operator runs them: in a copy of the project, as separate processes."""

import os
import shutil
import subprocess
import sys
import time

import pytest
from conftest import write_config

from config import PROJECT_DIR

STEP_MODULES = ["config", "db", "storage", "ingestion", "training", "scoring", "deployment", "fullprocess",
                "diagnostics", "reporting", "app", "apicalls", "dbsetup", "drop_tables", "datagen"]
HEAVY = ("pandas", "sklearn", "matplotlib", "reportlab", "scipy")


@pytest.fixture
def checkout(tmp_path, database_url):
    """A copy of the project's code, config and sample data, with DATABASE_URL set."""
    root = tmp_path / "checkout"
    root.mkdir()
    for path in [*PROJECT_DIR.glob("*.py"), PROJECT_DIR / "config.json", PROJECT_DIR / "execute_fullprocess.sh",
                 PROJECT_DIR / "requirements.txt", PROJECT_DIR / "alembic.ini"]:
        shutil.copy(path, root / path.name)
    shutil.copytree(PROJECT_DIR / "migrations", root / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    write_config(root, outdated_timeout_seconds=0)  # pip asks the network: tested in test_diagnostics
    path = f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"  # the wrapper's python3
    return root, {**os.environ, "DATABASE_URL": database_url, "MPLBACKEND": "Agg", "PATH": path}


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


def test_a_failed_tick_exits_non_zero_and_says_why(checkout):
    root, _ = checkout
    for path in (root / "sourcedata").iterdir():
        path.unlink()
    (root / "sourcedata" / "one.csv").write_text("corporation,lastmonth_activity,lastyear_activity,"
                                                 "number_of_employees,exited\nab,1,2,3,1\ncd,4,5,6,1\n")
    result = run(checkout, str(root / "fullprocess.py"), check=False)
    assert result.returncode == 1
    assert "tick failed: ValueError: cannot train" in result.stderr
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


def test_a_tick_waits_for_nobody_while_the_pipeline_is_busy(checkout):
    root, env = checkout
    holder = subprocess.Popen(["flock", str(root / ".pipeline.lock"), "sleep", "30"])
    try:
        time.sleep(0.3)
        result = run(checkout, str(root / "fullprocess.py"))
        assert "holds the pipeline lock" in result.stderr
        assert not (root / "riskassessment.db").exists() or "sqlite" not in env["DATABASE_URL"]
        assert not (root / "production_deployment").exists()
    finally:
        holder.kill()
        holder.wait()


def test_scoring_before_any_deployment_says_so(checkout):
    root, _ = checkout
    run(checkout, str(root / "ingestion.py"))
    result = run(checkout, str(root / "scoring.py"), check=False)
    assert result.returncode != 0
    assert "no model is deployed yet" in result.stderr


def test_importing_any_module_has_no_side_effects(checkout):
    root, _ = checkout
    modules = [m for m in STEP_MODULES if (root / f"{m}.py").exists()]
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
    holder = subprocess.Popen(["flock", str(root / ".pipeline.lock"), "sleep", "30"])
    try:
        time.sleep(0.3)
        blocked = subprocess.run(wrapper, cwd="/", env=env, capture_output=True, text=True, timeout=60)
        assert blocked.returncode == 0
        added = (root / "logs" / "fullprocess.log").read_text()[len(log):]
        assert "holds the pipeline lock: this tick has nothing to do" in added
        assert "tick ends with exit code 0" in added
    finally:
        holder.kill()
        holder.wait()


def _changed(path, since: float) -> bool:
    return path.exists() and path.stat().st_mtime > since


# Moments of a tick, each seen from outside: the kill lands right after it.
MILESTONES = {
    "started": lambda root, engine, t0: _running_runs(engine) != [],
    "ingested": lambda root, engine, t0: _changed(root / "testdata" / "testdata.csv", t0),
    "trained": lambda root, engine, t0: any(_changed(p, t0) for p in (root / "models").glob("model_*.pkl")),
    "deployed": lambda root, engine, t0: _changed(root / "production_deployment" / "trainedmodel.pkl", t0),
    "reporting": lambda root, engine, t0: _changed(root / "static" / "f1.png", t0),
}


def _running_runs(engine):
    import sqlalchemy as sa

    import db

    with engine.connect() as conn:
        return conn.execute(sa.select(db.runs.c.hex).where(db.runs.c.status == "running")).all()


@pytest.mark.parametrize("milestone", MILESTONES)
def test_a_tick_killed_at_any_moment_loses_nothing(checkout, milestone):
    import pandas as pd
    import sqlalchemy as sa

    import datagen
    import db
    import storage

    root, env = checkout
    run(checkout, str(root / "fullprocess.py"))
    for seed in (21, 22, 23):  # flipped labels: the tick ingests, detects drift, retrains and deploys
        datagen.generate(60_000, seed=seed, flip=1.0).to_csv(root / "sourcedata" / f"new_{seed}.csv", index=False)
    engine = db.make_engine(env["DATABASE_URL"])
    started = time.time()
    time.sleep(0.05)  # file times must tell this tick's writes from the first tick's
    tick = subprocess.Popen([sys.executable, str(root / "fullprocess.py")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not MILESTONES[milestone](root, engine, started):
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
    assert storage.sha256_file(root / "production_deployment" / "trainedmodel.pkl") == production.sha256
    assert sorted(p.name for p in (root / "reports").glob("*.pdf")) == sorted(f"report_{h}.pdf" for h in work)
