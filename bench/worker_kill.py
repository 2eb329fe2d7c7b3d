"""Requests around a killed gunicorn worker, under load with a tick running (issue 24).

    python bench/worker_kill.py                  # the release before and this checkout, 3 runs each
    python bench/worker_kill.py --seconds 20 --runs 1

A project with a deployed model (SQLite) is served as the Procfile serves it, gunicorn with 2 workers: the
release before (`--before`, b0ff6a2 by default: each worker imports the app and unpickles the model itself,
after the fork) and `--now` (HEAD by default, `--preload`: the master imports the app and loads the model's
numbers once, then forks). Each is a `git archive` of its commit with its own first tick. In
each run, `--clients` threads POST /prediction on keep-alive connections (a JSON record and a CSV body in turn)
for `--seconds`; a tick on 300,000 new rows starts with the load, and at a third of the run one worker is
killed with SIGKILL (gunicorn forks another). A request cut off by the kill is counted as failed and sent
again on a new connection. Printed per way: the slowest request (the target: at most 1 s), the 99th percentile,
the median, the failed requests, and how long after the kill the new worker answered its first request.
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

import datagen  # noqa: E402 - after the project is on the path

RECORD = {"lastmonth_activity": 12, "lastyear_activity": 150, "number_of_employees": 20}
CSV = b"lastmonth_activity,lastyear_activity,number_of_employees\n12,150,20\n400,150,20\n"


def procfile_web(root: Path, port: int) -> list[str]:
    """The web command of the Procfile in root."""
    line = next(line for line in (root / "Procfile").read_text().splitlines() if line.startswith("web:"))
    words = [w.strip('"') for w in line.removeprefix("web:").split()]
    return [sys.executable, "-m", *(f"127.0.0.1:{port}" if w.startswith("0.0.0.0:") else w for w in words)]


def prepare(where: Path, revision: str) -> Path:
    """A project of a commit (its tracked files, sample data included) with a deployed model."""
    root = where / "project"
    root.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(PROJECT_DIR), "archive", revision], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    config = json.loads((root / "config.json").read_text())
    (root / "config.json").write_text(json.dumps({**config, "outdated_timeout_seconds": 0}))
    setup = subprocess.run([sys.executable, "fullprocess.py"], cwd=root, capture_output=True, text=True, env=ENV)
    if "deployed" not in setup.stdout:
        raise RuntimeError(f"the first tick did not deploy: {setup.stdout}{setup.stderr}")
    return root


def client(port: int, stop: threading.Event, latencies: list, failures: list) -> None:
    """POST /prediction until stopped: (time, seconds) of each answer; a cut-off request is sent again."""
    conn = None
    turn = 0
    while not stop.is_set():
        json_turn = turn % 2 == 0
        body = json.dumps({"records": [RECORD]}).encode() if json_turn else CSV
        headers = {"Content-Type": "application/json" if json_turn else "text/csv"}
        started = time.perf_counter()
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/prediction", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
            latencies.append((time.perf_counter(), time.perf_counter() - started))
            turn += 1
        except (OSError, http.client.HTTPException, RuntimeError) as exc:
            failures.append((time.perf_counter(), repr(exc)))
            if conn is not None:
                conn.close()
            conn = None


def workers_of(master: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout.split()
    return sorted(int(pid) for pid in found)


ENV = {**{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "API_TOKEN")}, "MPLBACKEND": "Agg"}


def one_run(root: Path, seconds: float, clients: int, run: int, port: int) -> dict:
    env = ENV
    log = open(root / f"gunicorn_{run}.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(procfile_web(root, port), cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(workers_of(server.pid)) < 2 or not _answers(port):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"gunicorn did not start: {(root / log.name).read_text()[-2000:]}")
            time.sleep(0.2)
        datagen.generate(300_000, seed=100 + run).to_csv(root / "sourcedata" / f"load_{run}.csv", index=False)
        stop, latencies, failures = threading.Event(), [], []
        threads = [threading.Thread(target=client, args=(port, stop, latencies, failures)) for _ in range(clients)]
        tick = subprocess.Popen([sys.executable, "fullprocess.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        time.sleep(seconds / 3)
        before = workers_of(server.pid)
        os.kill(before[0], signal.SIGKILL)
        killed_at = time.perf_counter()
        new_worker_at = None
        while time.perf_counter() - started < seconds:
            now = workers_of(server.pid)
            if new_worker_at is None and len(now) == 2 and now != before:
                new_worker_at = time.perf_counter()
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        tick.wait(timeout=600)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    seconds_taken = sorted(s for _, s in latencies)
    around = [s for t, s in latencies if t >= killed_at]
    return {"slowest": seconds_taken[-1], "p99": seconds_taken[int(0.99 * (len(seconds_taken) - 1))],
            "median": statistics.median(seconds_taken), "requests": len(latencies), "failed": len(failures),
            "slowest_after_kill": max(around) if around else None,
            "worker_back": None if new_worker_at is None else new_worker_at - killed_at}


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/health")
        ok = conn.getresponse().status in (200, 503)
        conn.close()
        return ok
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before", default="b0ff6a2", help="the release to compare with (a commit)")
    parser.add_argument("--now", default="HEAD", help="the release measured (a commit: commit your changes first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        roots = {False: prepare(Path(tmp) / "before", args.before), True: prepare(Path(tmp) / "now", args.now)}
        results = {False: [], True: []}
        for run in range(args.runs):  # interleaved: the machine's state is the same for both
            for preload, root in roots.items():
                results[preload].append(one_run(root, args.seconds, args.clients, run, 18000 + 2 * run + preload))
                print(f"  run {run + 1}, {'now' if preload else 'before'}: {results[preload][-1]}", file=sys.stderr)
    print(f"POST /prediction under load ({args.clients} clients, a tick on 300,000 rows), one of 2 gunicorn workers "
          f"killed with SIGKILL at {args.seconds / 3:.0f} s of {args.seconds:.0f} s; {args.runs} run(s) each")
    print("| workers start | slowest request | slowest after the kill | p99 | median | failed | new worker after |")
    print("|---|---|---|---|---|---|---|")
    def worst(runs, key):
        values = [r[key] for r in runs if r[key] is not None]
        return f"{max(values):.3f} s" if values else "-"

    for preload, runs in results.items():
        label = "now: --preload" if preload else f"before ({args.before}): each worker on its own"
        median = statistics.median(r["median"] for r in runs) * 1000
        failed = f"{sum(r['failed'] for r in runs)} of {sum(r['requests'] + r['failed'] for r in runs)}"
        print(f"| {label} | {worst(runs, 'slowest')} | {worst(runs, 'slowest_after_kill')} | {worst(runs, 'p99')} | "
              f"{median:.1f} ms | {failed} | {worst(runs, 'worker_back')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
