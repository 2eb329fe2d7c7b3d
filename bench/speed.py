"""The figures of issue 13, each with its goal and met / not met, as ratios taken in the same run.

    python bench/speed.py                    # the issue's sizes (1,000,000 and 2,000,000 rows)
    python bench/speed.py --scale 0.1        # every size divided by 10, for a quick look
    python bench/speed.py --only predict     # one part: tick, huge, working, history, ingestion, predict
    python bench/speed.py --postgres postgresql://postgres@127.0.0.1:5432/postgres   # on PostgreSQL

--postgres ADMIN_URL: every project copy gets a fresh database of that server (its `.env` names it; a copy
of a prepared project gets a copy of its database, CREATE DATABASE ... TEMPLATE), dropped at the end.
The bench runs on any checkout that has bench/bench.py beside it, the releases before the data sets
moved into the database included (copy this bench/ into one to measure it the same way).

Every process is timed whole (wall time, from start to exit) with its peak memory (ru_maxrss of
that process and the children it waited for), in temporary copies of the project on SQLite whose
modules are compiled to bytecode once, as a project is after its first run (installed()). The
package-index check runs as configured (outdated_timeout_seconds): a tick that waits on it shows it.

The part `tick` also times, on the same rows (a 1,000,000-row history, then 1,000,000 new drifted
rows in three files), two references that need an environment of their own (pandas < 3), made once:

    python3 -m venv bench/out/evidently-venv && bench/out/evidently-venv/bin/pip install -r bench/requirements-evidently.txt

- Evidently's DataDriftPreset alone (bench/evidently_drift.py run by --evidently-python, the history
  as reference, the new rows as current);
- the public implementation Geodego/dynamic_risk_assessment (no database, no PDF, no data drift),
  whose files are kept outside this repository (its code is not ours to commit): put them in a
  directory (bench/out/reference-impl, or --reference-impl DIR). The bench copies it, writes its
  config.json, runs its ingestion, training, scoring and deployment on the history (untimed), adds
  the new files and times its fullprocess.py, run by --reference-python (the same venv by default).
  Its last step, apicalls.py, calls its Flask API on 127.0.0.1:8000, which the bench does not start
  (as under its cron job alone): that step fails at once and the output says so.
Without the venv or the directory the output says "not measured" and how to set it up.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datagen  # noqa: E402
from bench import copy_project  # noqa: E402 - after the bench is on the path

# Runs a command as a child and prints its wall seconds and its own peak memory (KiB), as JSON.
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "rc": done.returncode, "out": done.stdout[-2000:], "err": done.stderr[-4000:]}))
"""
IMPORTS = "import pandas, sklearn.linear_model, matplotlib.pyplot, reportlab.platypus"
HELLO = "from flask import Flask\napp = Flask(__name__)\n\n@app.get('/')\ndef hello():\n    return 'hello'\n"
POST_LUA = ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"records": [{"lastmonth_activity": 12, "lastyear_activity": 150, "number_of_employees": 20}]}\'\n')
RESULTS: list[tuple[str, str, str, bool | None]] = []  # (figure, measured, goal, met)
BENCH = Path(__file__).resolve().parent
EVIDENTLY_PYTHON = BENCH / "out" / "evidently-venv" / "bin" / "python"
SETUP = ("make its venv: python3 -m venv bench/out/evidently-venv && bench/out/evidently-venv/bin/pip install -r "
         "bench/requirements-evidently.txt")


POSTGRES: list[str] = []  # the admin URL, when --postgres is given
DATABASES: list[str] = []  # the databases made for project copies: dropped at the end


def env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN")}


def database_url(root: Path) -> str:
    """The database a project copy runs on: its `.env` (PostgreSQL) or its SQLite file."""
    dotenv = root / ".env"
    if dotenv.exists():
        return dotenv.read_text().strip().removeprefix("DATABASE_URL=")
    return f"sqlite:///{root / 'riskassessment.db'}"


def new_database(root: Path, template: str | None = None) -> None:
    """With --postgres, a fresh database (or a copy of `template`) for the project copy at root."""
    if not POSTGRES:
        return
    import uuid

    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES[0], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:  # generated names, not input
        conn.execute(sa.text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    admin.dispose()
    DATABASES.append(name)
    (root / ".env").write_text(f"DATABASE_URL={sa.make_url(POSTGRES[0]).set(database=name).render_as_string(False)}\n")


def drop_databases() -> None:
    if not DATABASES:
        return
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES[0], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for name in DATABASES:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def copy_prepared(prepared: Path, dest: Path) -> Path:
    """A copy of a prepared project, its database included."""
    root = shutil.copytree(prepared, dest)
    if (prepared / ".env").exists():
        import sqlalchemy as sa

        new_database(root, template=sa.make_url(database_url(prepared)).database)
    return root


def database_bytes(root: Path) -> int:
    """What the project's database takes: the SQLite file, or pg_database_size."""
    url = database_url(root)
    if url.startswith("sqlite"):
        return (root / "riskassessment.db").stat().st_size
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar()
    engine.dispose()
    return size


def measure(command: list[str], cwd: Path | None = None, environment: dict | None = None) -> dict:
    """Wall seconds and peak MB of one whole process; exits the bench if it fails."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True,
                          env=environment or env(), cwd=cwd)
    result = json.loads(done.stdout)
    if result["rc"]:
        sys.exit(f"{' '.join(command)} failed:\n{result['err']}")
    return {"seconds": result["seconds"], "mb": result["kib"] / 1024, "out": result["out"], "err": result["err"]}


def installed(tmp: Path) -> Path:
    """A copy of the project as installed and run before: its modules compiled to bytecode once, as
    Python caches them on a project's first run (this machine sets PYTHONDONTWRITEBYTECODE=1, under which
    every process would compile the project's 5,000 lines again: about 0.09 s of `python ingestion.py`,
    which the pyarrow reference, all installed packages, never pays)."""
    root = copy_project(tmp, with_samples=False)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root)], check=True, env=env())
    new_database(root)
    return root


def project(tmp: Path, first_rows: int) -> Path:
    """A project copy whose first tick deployed a model trained on `first_rows` rows."""
    root = installed(tmp)
    config = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**config, "outdated_timeout_seconds": 15}))
    datagen.generate(first_rows, seed=1).to_csv(root / "sourcedata" / "base.csv", index=False)
    tick(root)
    settle(root)
    return root


def settle(root: Path, limit: float = 60.0) -> None:
    """Wait for the outdated-packages check the first tick started in the background (once a day): it is
    the setup's work, and would otherwise take a core from the tick being timed."""
    import fcntl

    import sqlalchemy as sa

    engine = sa.create_engine(database_url(root))
    started = time.monotonic()
    while time.monotonic() - started < limit:
        with engine.connect() as conn:
            answered = conn.execute(sa.text("SELECT count(*) FROM package_checks")).scalar()
        if answered:
            engine.dispose()
            with open(root / ".outdated_check.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # its process holds it until its answer is stored
            return
        time.sleep(0.2)
    engine.dispose()
    print(f"(the outdated-packages check of the first tick did not answer within {limit:.0f} s)", flush=True)


def tick(root: Path) -> dict:
    return measure([sys.executable, str(root / "fullprocess.py")], cwd=root)


def add_files(root: Path, rows: int, name: str, seed: int, flip: float = 0.0, parts: int = 3) -> list[Path]:
    paths = []
    for part in range(parts):
        path = root / "sourcedata" / f"{name}_{part}.csv"
        datagen.generate(rows // parts + (part < rows % parts), seed=seed + part, flip=flip).to_csv(path, index=False)
        paths.append(path)
    return paths


def record(figure: str, measured: str, goal: str, met: bool | None) -> None:
    RESULTS.append((figure, measured, goal, met))
    print(f"{figure}: {measured}; goal {goal}: {'-' if met is None else 'met' if met else 'NOT met'}", flush=True)


def evidently(python: Path | None, reference: list[Path], current: list[Path]) -> dict | None:
    """bench/evidently_drift.py as a whole process under the Evidently venv's Python."""
    if python is None:
        return None
    return measure([str(python), str(BENCH / "evidently_drift.py"), *map(str, reference), "--", *map(str, current)])


def reference_tick(impl: Path | None, python: Path | None, where: Path, history: list[Path], new: list[Path]) -> dict | None:
    """The public implementation's fullprocess.py on `new` after its first model on `history` (untimed)."""
    if impl is None or python is None:
        return None
    root = where / "reference"
    shutil.copytree(impl, root, ignore=shutil.ignore_patterns("__pycache__", "config.json", "logs.log"))
    folders = {"input_folder_path": "sourcedata", "output_folder_path": "ingesteddata", "test_data_path": "testdata",
               "output_model_path": "models", "prod_deployment_path": "production_deployment"}
    (root / "config.json").write_text(json.dumps(folders))
    for folder in folders.values():  # its "except FileNotFoundError: os.mkdir" misses pandas 2's OSError
        (root / folder).mkdir()
    datagen.generate(1000, seed=7).to_csv(root / "testdata" / "testdata.csv", index=False)  # read by apicalls.py only
    for path in history:
        shutil.copy(path, root / "sourcedata")
    # Its python3 subprocesses and pip are the venv's, as under its conda environment.
    environment = {**env(), "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    score = "from scoring import score_model; score_model('ingesteddata/finaldata.csv', 'models/trainedmodel.pkl')"
    for step in (["ingestion.py"], ["training.py"], ["-c", score], ["deployment.py"]):
        done = subprocess.run([str(python), *step], cwd=root, env=environment, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"the public implementation's {step[-1]} failed:\n{done.stderr[-4000:]}")
    for path in new:
        shutil.copy(path, root / "sourcedata")
    result = measure([str(python), "fullprocess.py"], cwd=root, environment=environment)
    log = (root / "logs.log").read_text()
    result["status"] = "retrained" if "Model drift found" in log else "no drift" if "No drift found" in log else "?"
    if "apicalls.py" in result["err"] and "Connection refused" in result["err"]:
        result["status"] += "; its apicalls.py found no API on 127.0.0.1:8000 and failed"
    return result


def seconds(results: list[dict]) -> str:
    return ", ".join(f"{r['seconds']:.1f}" for r in results)


def big_tick(args: argparse.Namespace) -> None:
    """A tick ingesting 1,000,000 drifted rows in three files on a 1,000,000-row history: drift, retrain,
    deploy, PDF, on fresh copies of one prepared project, each followed by Evidently's DataDriftPreset on the
    same rows (medians of --repeat); then the public implementation's tick on them, once."""
    rows = int(1_000_000 * args.scale)
    ticks, drifts = [], []
    with tempfile.TemporaryDirectory() as tmp:
        prepared = project(Path(tmp), rows)
        new = add_files(prepared, rows, "new", 100, flip=1.0)
        history = [prepared / "sourcedata" / "base.csv"]
        for run in range(args.repeat):  # the tick on a fresh copy of the prepared project, then Evidently: interleaved
            root = copy_prepared(prepared, Path(tmp) / f"run{run}" / "project")
            ticks.append(tick(root))
            new_here = [root / "sourcedata" / path.name for path in new]
            drifts.append(evidently(args.evidently_python, [root / "sourcedata" / "base.csv"], new_here))
            shutil.rmtree(root.parent)
        public = reference_tick(args.reference_impl, args.reference_python, Path(tmp), history, new)
    result = {"seconds": statistics.median(t["seconds"] for t in ticks), "mb": max(t["mb"] for t in ticks),
              "out": ticks[-1]["out"]}
    drift = None if drifts[0] is None else {"seconds": statistics.median(d["seconds"] for d in drifts),
                                             "mb": max(d["mb"] for d in drifts), "out": drifts[-1]["out"]}
    status = result["out"].strip().split()[-1] if result["out"].strip() else "?"
    ours = f"{result['seconds']:.1f} s, {result['mb']:.0f} MB"
    if args.repeat > 1:
        ours += f" (median of {args.repeat}: {seconds(ticks)} s; the highest peak)"
    record(f"tick ingesting {rows:,} rows with retrain on {rows:,} rows of history ({status})", ours,
           "peak memory < 1024 MB", result["mb"] < 1024)
    if drift is None:
        record("  same tick against Evidently's DataDriftPreset alone", f"not measured: {SETUP} (or pass "
               "--evidently-python)", "<= 1.0x", None)
    else:
        ratio = result["seconds"] / drift["seconds"]
        runs = f" (median of {len(drifts)}: {seconds(drifts)} s)" if len(drifts) > 1 else ""
        record(f"  same tick against Evidently's DataDriftPreset alone ({drift['out'].strip()})",
               f"{result['seconds']:.1f} s against {drift['seconds']:.1f} s{runs}, {drift['mb']:.0f} MB: {ratio:.2f}x",
               "<= 1.0x", ratio <= 1.0)
    if public is None:
        record("  same tick against the public reference implementation", "not measured: put the files of "
               "Geodego/dynamic_risk_assessment in bench/out/reference-impl (or pass --reference-impl DIR) and "
               f"{SETUP} (or pass --reference-python)", "<= 0.7x", None)
    else:
        ratio = result["seconds"] / public["seconds"]
        record(f"  same tick against the public reference implementation's fullprocess.py ({public['status']}; run once)",
               f"{result['seconds']:.1f} s against {public['seconds']:.1f} s, {public['mb']:.0f} MB: {ratio:.2f}x",
               "<= 0.7x", ratio <= 0.7)


def working_tick(scale: float, repeat: int) -> None:
    """A tick on 100,000 new rows (after a first model on 100,000) against importing the libraries."""
    rows = int(100_000 * scale)
    ticks, imports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), rows)
        for run in range(repeat):
            add_files(root, rows, f"work{run}", 200 + 10 * run)
            ticks.append(tick(root)["seconds"])
            imports.append(measure([sys.executable, "-c", IMPORTS])["seconds"])
    ratio = statistics.median(ticks) / statistics.median(imports)
    record(f"working tick on {rows:,} new rows, PDF included, against `python -c \"{IMPORTS}\"`",
           f"{statistics.median(ticks):.2f} s against {statistics.median(imports):.2f} s: {ratio:.2f}x "
           f"(medians of {repeat})", "<= 2x", ratio <= 2)


def small_file(history: int, repeat: int) -> dict:
    """Median tick of a 100-row file on a history of `history` rows, ingested by ingestion.py and then
    reported on once by reporting.py (which scores the production model on the history's held-out rows, as
    the first tick after a bulk ingestion by hand would): every timed tick has only its own rows to read."""
    times, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        first = min(20_000, history // 2)
        root = project(Path(tmp), first)
        add_files(root, history - first, "history", 300)
        measure([sys.executable, str(root / "ingestion.py")], cwd=root)
        catch_up = measure([sys.executable, str(root / "reporting.py")], cwd=root)
        for run in range(repeat):
            add_files(root, 100, f"small{run}", 400 + run, parts=1)
            result = tick(root)
            times.append(result["seconds"])
            peaks.append(result["mb"])
    return {"seconds": statistics.median(times), "mb": max(peaks), "status": result["out"].strip(),
            "catch_up": catch_up}


def history_cost(scale: float, repeat: int) -> None:
    """A 100-row file on a 2,000,000-row history against the same on a 100,000-row history."""
    small, large = int(100_000 * scale), int(2_000_000 * scale)
    base, big = small_file(small, repeat), small_file(large, repeat)
    ratio = big["seconds"] / base["seconds"]
    record(f"100-row file on {large:,} rows of history against {small:,}",
           f"{big['seconds']:.2f} s against {base['seconds']:.2f} s: {ratio:.2f}x ({big['status']})", "<= 1.5x", ratio <= 1.5)
    record(f"  its peak memory on {large:,} rows of history", f"{big['mb']:.0f} MB ({base['mb']:.0f} MB on {small:,})",
           "< 300 MB", big["mb"] < 300)
    catch_up = big["catch_up"]
    record(f"  (once, before: reporting.py scoring the {large:,}-row history's held-out rows)",
           f"{catch_up['seconds']:.2f} s, {catch_up['mb']:.0f} MB", "-", None)


def ingestion_cost(scale: float, repeat: int) -> None:
    """`python ingestion.py` on 1,000,000 rows in three files against pyarrow.csv.read_csv of them; and what
    those rows take, in the database and in the data folders (exports, or the data sets of earlier releases)."""
    rows = int(1_000_000 * scale)
    ours, theirs, growth = [], [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            root = installed(Path(tmp))
            paths = add_files(root, rows, "new", 100)
            read = "import sys, pyarrow.csv as c\nfor p in sys.argv[1:]: c.read_csv(p)"
            measure([sys.executable, str(root / "dbsetup.py")], cwd=root)  # the schema exists, as on any later run
            before = database_bytes(root)
            theirs.append(measure([sys.executable, "-c", read, *map(str, paths)])["seconds"])
            ours.append(measure([sys.executable, str(root / "ingestion.py")], cwd=root)["seconds"])
            files = sum(p.stat().st_size for folder in ("ingesteddata", "testdata") if (root / folder).is_dir()
                        for p in (root / folder).iterdir())
            growth.append((database_bytes(root) - before, files))
    ratio = statistics.median(ours) / statistics.median(theirs)
    record(f"`python ingestion.py` on {rows:,} rows against pyarrow.csv.read_csv as a whole process",
           f"{statistics.median(ours):.2f} s against {statistics.median(theirs):.2f} s: {ratio:.1f}x", "<= 8x", ratio <= 8)
    stored, files = growth[-1]
    record(f"  what {rows:,} rows add: the database, and the data folders beside it",
           f"database +{stored / 2**20:.0f} MiB, data folders {files / 2**20:.0f} MiB", "-", None)


def requests_per_second(command: list[str], cwd: Path, port: int, path: str, lua: Path | None) -> float:
    """wrk -t1 -c4 -d10s against a gunicorn started for it (keep-alive, loopback)."""
    server = subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            probe = subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=False)
            if probe.returncode == 0:
                break
            time.sleep(0.2)
        wrk = ["wrk", "-t1", "-c4", "-d10s", *(["-s", str(lua)] if lua else []), f"http://127.0.0.1:{port}{path}"]
        out = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
    finally:
        server.terminate()
        server.wait(timeout=30)
    if "Non-2xx" in out:
        sys.exit(f"wrk saw errors:\n{out}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def prediction_rate(repeat: int) -> None:
    """POST /prediction with one record under gunicorn -w 2 against a bare Flask app under the same."""
    if shutil.which("wrk") is None:
        record("POST /prediction against a bare Flask app", "not measured: wrk is not installed "
               "(apt-get install -y wrk)", ">= 0.5x", None)
        return
    import socket

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        root = project(Path(tmp), 20_000)
        (root / "hello.py").write_text(HELLO)
        (root / "post.lua").write_text(POST_LUA)
        gunicorn = [sys.executable, "-m", "gunicorn", "-w", "2", "--bind", f"127.0.0.1:{port}"]
        pairs = []
        for _ in range(repeat):  # interleaved: the machine's load drifts over a minute
            bare = requests_per_second([*gunicorn, "hello:app"], root, port, "/", None)
            ours = requests_per_second([*gunicorn, f"app:create_app({str(root)!r})"], root, port, "/prediction",
                                       root / "post.lua")
            pairs.append((ours, bare))
    ours, bare = (statistics.median(side) for side in zip(*pairs, strict=True))
    runs = ", ".join(f"{o / b:.2f}x" for o, b in pairs)
    record(f"POST /prediction, one record, gunicorn -w 2, wrk -t1 -c4 -d10s, against a bare Flask app (medians of {repeat})",
           f"{ours:,.0f} req/s against {bare:,.0f} req/s: {ours / bare:.2f}x (runs: {runs})", ">= 0.5x", ours / bare >= 0.5)


def huge_history(scale: float) -> None:
    """A tick ingesting 1,000,000 drifted rows (drift, retrain on the window, deploy, PDF) on a 10,000,000-row
    history, ingested beforehand by ingestion.py a million rows at a time: its peak memory."""
    rows, history = int(1_000_000 * scale), int(10_000_000 * scale)
    with tempfile.TemporaryDirectory() as tmp:
        first = min(20_000, history)
        root = project(Path(tmp), first)
        for part, start in enumerate(range(first, history, rows)):
            add_files(root, min(rows, history - start), f"history{part}", 1000 + 10 * part, parts=1)
            measure([sys.executable, str(root / "ingestion.py")], cwd=root)
        add_files(root, rows, "new", 100, flip=1.0)
        result = tick(root)
    status = result["out"].strip().split()[-1] if result["out"].strip() else "?"
    record(f"tick ingesting {rows:,} rows on {history:,} rows of history ({status})",
           f"{result['seconds']:.1f} s, {result['mb']:.0f} MB", "peak memory < 3072 MB", result["mb"] < 3072)


PARTS = {"tick": big_tick, "huge": lambda a: huge_history(a.scale), "working": lambda a: working_tick(a.scale, a.repeat),
         "history": lambda a: history_cost(a.scale, a.repeat), "ingestion": lambda a: ingestion_cost(a.scale, a.repeat),
         "predict": lambda a: prediction_rate(a.repeat)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row count by this")
    parser.add_argument("--repeat", type=int, default=3, help="runs per median")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=list(PARTS))
    default_python = EVIDENTLY_PYTHON if EVIDENTLY_PYTHON.exists() else None
    default_impl = BENCH / "out" / "reference-impl" if (BENCH / "out" / "reference-impl").is_dir() else None
    parser.add_argument("--evidently-python", type=Path, default=default_python, metavar="PATH",
                        help="Python of a venv with bench/requirements-evidently.txt (default: %(default)s)")
    parser.add_argument("--reference-impl", type=Path, default=default_impl, metavar="DIR",
                        help="files of Geodego/dynamic_risk_assessment (default: %(default)s)")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="run on fresh databases of this PostgreSQL server")
    parser.add_argument("--reference-python", type=Path, metavar="PATH",
                        help="Python that runs the public implementation (default: --evidently-python)")
    args = parser.parse_args()
    args.reference_python = args.reference_python or args.evidently_python
    if args.postgres:  # psycopg2, the project's driver (SQLAlchemy's default for postgresql:// is psycopg 3)
        POSTGRES.append(args.postgres.replace("postgresql://", "postgresql+psycopg2://", 1))
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite'}", flush=True)
    try:
        for part in args.only:
            PARTS[part](args)
    finally:
        drop_databases()
    print("\n| figure | measured | goal | met |\n|---|---|---|---|")
    for figure, measured, goal, met in RESULTS:
        print(f"| {figure.strip()} | {measured} | {goal} | {'-' if met is None else 'yes' if met else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
