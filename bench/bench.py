"""Measure what the pipeline costs; prints ratios measured in the same run.

    python bench/bench.py                            # 10,000, 100,000 and 1,000,000 rows
    python bench/bench.py --rows 1000 10000 100000   # smaller sizes for a quick look

1. A tick with no new data against `python -c "import sqlalchemy"` (target: at most 2x).
2. A tick ingesting N new rows in three files whose labels are flipped (drift, retrain):
   peak memory of the tick's process (target: under 1 GB at 1,000,000 rows), and each
   stage's seconds at three sizes. A stage has a fixed cost (imports, plots) and a cost per
   row; it is linear when its growth from the smallest size follows the growth of the rows.
Everything runs in temporary copies of the project on SQLite, without the network check for
outdated packages (a fixed cost of a few seconds that depends on the package index).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import datagen  # noqa: E402 - after the project is on the path

# Runs one tick in this process and prints its stage timings, for part 2.
TICK = """
import json, sys
sys.path.insert(0, sys.argv[1])
from riskmonitor.config import load_config
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db
config = load_config(sys.argv[1])
tick = run_tick(config, db.make_engine(config.database_url))
print(json.dumps({"status": tick.status, "stages": tick.stages}))
"""


def copy_project(where: Path, with_samples: bool = True) -> Path:
    """A copy of the project's code and config (and its sample data) under where."""
    root = where / "project"
    root.mkdir()
    for path in [*PROJECT_DIR.glob("*.py"), PROJECT_DIR / "config.json", PROJECT_DIR / "requirements.txt",
                 PROJECT_DIR / "alembic.ini"]:
        shutil.copy(path, root / path.name)
    for folder in ("riskmonitor", "migrations"):  # an earlier release has no riskmonitor/
        if (PROJECT_DIR / folder).is_dir():
            shutil.copytree(PROJECT_DIR / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    if with_samples:
        shutil.copytree(PROJECT_DIR / "sourcedata", root / "sourcedata")
    else:
        (root / "sourcedata").mkdir()
    config = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**config, "outdated_timeout_seconds": 0}))
    return root


def wall(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True)
    return time.perf_counter() - started


def no_new_data(repeat: int) -> None:
    """Median wall time of an idle tick against importing sqlalchemy, interleaved."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(Path(tmp))
        tick = [sys.executable, str(root / "fullprocess.py")]
        subprocess.run(tick, check=True, env=env, capture_output=True)  # deploys the first model
        imports, ticks = [], []
        for _ in range(repeat):
            imports.append(wall([sys.executable, "-c", "import sqlalchemy"], env))
            ticks.append(wall(tick, env))
    base, idle = statistics.median(imports), statistics.median(ticks)
    print(f"no new data: tick {idle * 1000:.0f} ms, import sqlalchemy {base * 1000:.0f} ms, "
          f"ratio {idle / base:.2f} (target <= 2.00), medians of {repeat}")


def big_tick(rows: int) -> dict:
    """Stage seconds and peak memory of a tick ingesting `rows` drifted rows in three files."""
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_project(Path(tmp), with_samples=False)
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        datagen.generate(20_000, seed=1).to_csv(root / "sourcedata" / "base.csv", index=False)
        subprocess.run([sys.executable, str(root / "fullprocess.py")], check=True, env=env, capture_output=True)
        for part in range(3):
            frame = datagen.generate(rows // 3 + (part < rows % 3), seed=100 + part, flip=1.0)
            frame.to_csv(root / "sourcedata" / f"new_{part}.csv", index=False)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", TICK, str(root)], env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"tick of {rows} rows failed:\n{done.stderr}")
        peak_mb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
        result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{rows:>9,} rows: {result['status']}, {seconds:.1f} s in all, peak memory {peak_mb:.0f} MB; stages: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in result["stages"].items()))
    return {"rows": rows, "peak_mb": peak_mb, "stages": result["stages"]}


def compare(base: dict, small: dict, large: dict) -> None:
    """Growth of each stage's cost above the smallest size, next to the growth of the rows."""
    factor = (large["rows"] - base["rows"]) / (small["rows"] - base["rows"])
    print(f"growth of each stage above {base['rows']:,} rows, {large['rows']:,} against {small['rows']:,} "
          f"rows (linear: about {factor:.1f}):")
    for stage, seconds in large["stages"].items():
        fixed, before = base["stages"].get(stage, 0.0), small["stages"].get(stage, 0.0)
        growth = (seconds - fixed) / (before - fixed) if before - fixed > 0.01 else float("nan")
        print(f"  {stage:<12} {fixed:7.2f} s | {before:7.2f} s | {seconds:7.2f} s   growth {growth:5.1f}")
    verdict = "under" if large["peak_mb"] < 1024 else "OVER"
    print(f"peak memory at {large['rows']:,} rows: {large['peak_mb']:.0f} MB ({verdict} 1 GB)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs=3, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    no_new_data(args.repeat)
    compare(*(big_tick(rows) for rows in args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
