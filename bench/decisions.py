"""Measure the tick's decisions: false alarms on unchanged data, detection of real changes, and
whether what gets deployed is better on the new distribution. Ticks go through the real
`fullprocess.run_tick`, in-process, in temporary projects on SQLite, with the PDF, the plots and
the outdated-packages check switched off.

    python bench/decisions.py                      # the full benchmark (long: see --quick)
    python bench/decisions.py --quick              # fewer ticks and runs, for a first look
    python bench/decisions.py --tests pooled --sizes 2000 --scenarios unchanged flip30

Each run starts from a model trained on the 8,000 training rows of a first file of 10,000 (the
other 2,000 are held out), then feeds ticks of one batch each. A tick "retrains" when it ends
`deployed` or `kept`: model drift or data drift led to training. Unchanged data gives the
false-alarm rate (the default test: runs of --long-ticks consecutive ticks; the others: shorter
runs); each change is fed for 3 ticks and gives the detection rate and the ticks to detection.
After each change run, the model in production and the first model are scored on a fresh sample
of 50,000 rows of the new distribution, and so is each deployed model against the one it replaced.
Rates come with their 95% Clopper-Pearson interval.
"""

import argparse
import json
import logging
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

FIRST_ROWS = 10_000
FRESH_ROWS = 50_000
CHANGE_TICKS = 3
SCENARIOS = {  # datagen.generate options of each tick's batch
    "unchanged": {},
    "flip30": {"flip": 0.3},
    "flip100": {"flip": 1.0},
    "shift3": {"shift": 3.0},
    "lastmonth1.2": {"scale": {"lastmonth_activity": 1.2}},
    "concept": {"concept": True},
}


def make_project(where: Path, drift_test: str) -> Path:
    """A project directory with the real config.json (drift test changed) and an empty input folder."""
    root = where / "project"
    (root / "sourcedata").mkdir(parents=True)
    config = json.loads((PROJECT_DIR / "config.json").read_text())
    config.update(drift_test=drift_test, outdated_timeout_seconds=0)
    (root / "config.json").write_text(json.dumps(config))
    return root


def quiet_reports() -> None:
    """No plots and no PDF in the replay: they cost seconds and decide nothing."""
    from riskmonitor.reporting import report

    report.write_report = lambda config, engine, run_hex: None
    logging.disable(logging.WARNING)


def run_once(job: dict) -> dict:
    """One run: a first model, then job['ticks'] batches; what each tick decided, and fresh-sample F1s."""
    import datagen
    from riskmonitor.config import load_config
    from riskmonitor.pipeline.tick import run_tick
    from riskmonitor.store import db

    quiet_reports()
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(make_project(Path(tmp), job["test"]))
        engine = db.make_engine(config.database_url)
        datagen.generate(FIRST_ROWS, seed=job["seed"], rule=job["rule"]).to_csv(
            config.input_folder_path / "first.csv", index=False)
        first = run_tick(config, engine)
        options = SCENARIOS[job["scenario"]]
        retrains, deployed = [], [first.hex]
        for tick_number in range(job["ticks"]):
            batch = datagen.generate(job["rows"], seed=job["seed"] * 1000 + tick_number + 1, rule=job["rule"], **options)
            batch.to_csv(config.input_folder_path / f"batch_{tick_number:04d}.csv", index=False)
            tick = run_tick(config, engine)
            retrains.append(tick.status in ("deployed", "kept"))
            if tick.status == "deployed":
                deployed.append(tick.hex)
        fresh = _fresh_scores(config, job, deployed) if job["fresh"] else []
        engine.dispose()
    return {**job, "retrains": retrains, "deploys": len(deployed) - 1, "fresh": fresh}


def _fresh_scores(config, job: dict, deployed: list[str]) -> list[float]:
    """F1 of each model deployed in the run, in order, on a fresh sample of the batches' distribution."""
    import datagen
    from riskmonitor.model.scoring import score_model
    from riskmonitor.model.training import model_path
    from riskmonitor.store import storage

    sample = datagen.generate(FRESH_ROWS, seed=job["seed"] * 1000 + 999, rule=job["rule"], **SCENARIOS[job["scenario"]])
    scores = []
    for model_hex in deployed:
        path = model_path(config, model_hex)
        scores.append(score_model(storage.load_model(path, storage.sha256_file(path)), sample, config))
    return scores


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact two-sided 95% interval of a binomial rate."""
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


def plan(args) -> list[dict]:
    """Every run of the benchmark as a job for the worker pool, the longest first."""
    jobs = []
    for test in args.tests:
        long_run = test == args.default
        for rows in args.sizes:
            if "unchanged" in args.scenarios:
                runs, ticks = (args.long_runs, args.long_ticks) if long_run else (args.short_runs, args.short_ticks)
                for rule in args.rules:
                    jobs += [dict(test=test, rows=rows, rule=rule, scenario="unchanged", ticks=ticks, seed=1 + r,
                                  fresh=False) for r in range(runs)]
            for scenario in [s for s in args.scenarios if s != "unchanged"]:
                jobs += [dict(test=test, rows=rows, rule=args.rules[r % len(args.rules)], scenario=scenario,
                              ticks=CHANGE_TICKS, seed=101 + r, fresh=True) for r in range(args.change_runs)]
    return sorted(jobs, key=lambda j: -j["rows"] * j["ticks"] ** 1.5)


def rate(k: int, n: int) -> str:
    low, high = clopper_pearson(k, n)
    return f"{k / n:6.1%} ({k}/{n}, CI {low:.1%}-{high:.1%})" if n else "-"


def false_alarm_table(results: list[dict], args) -> list[str]:
    lines = ["## False alarms on unchanged data (share of ticks that retrained; 95% Clopper-Pearson interval)", "",
             "| test | rule | " + " | ".join(f"{s:,} rows" for s in args.sizes) + " |",
             "|---|---|" + "---|" * len(args.sizes)]
    for test in args.tests:
        for rule in args.rules:
            cells = []
            for rows in args.sizes:
                done = [r for r in results if (r["test"], r["rule"], r["rows"], r["scenario"]) == (test, rule, rows, "unchanged")]
                k, n = sum(sum(r["retrains"]) for r in done), sum(len(r["retrains"]) for r in done)
                deploys = sum(r["deploys"] for r in done)
                cells.append(f"{rate(k, n)}; {deploys} deployed" if n else "-")
            lines.append(f"| {test} | {rule} | " + " | ".join(cells) + " |")
    return lines


def detection_table(results: list[dict], args) -> list[str]:
    lines = ["## Detection within 3 ticks of a change (runs that retrained; mean ticks to the first retrain)", "",
             "| test | change | " + " | ".join(f"{s:,} rows" for s in args.sizes) + " |",
             "|---|---|" + "---|" * len(args.sizes)]
    for test in args.tests:
        for scenario in [s for s in args.scenarios if s != "unchanged"]:
            cells = []
            for rows in args.sizes:
                done = [r for r in results if (r["test"], r["rows"], r["scenario"]) == (test, rows, scenario)]
                firsts = [r["retrains"].index(True) + 1 for r in done if any(r["retrains"])]
                mean = f"; {sum(firsts) / len(firsts):.2f} ticks" if firsts else ""
                cells.append(f"{rate(len(firsts), len(done))}{mean}" if done else "-")
            lines.append(f"| {test} | {scenario} | " + " | ".join(cells) + " |")
    return lines


def adaptation_table(results: list[dict], args) -> list[str]:
    """After each change: is the model in production 3 ticks later better than the first model on the
    new distribution, and how much worse than the model it replaced was any deployment at worst."""
    lines = ["## After a change: the model in production vs the first model, on 50,000 fresh rows of the new distribution",
             "", "(better: share of runs where production beats the first model; mean gain in F1; worst: the largest "
             "loss in F1 of any deployment against the model it replaced)", "",
             "| test | change | " + " | ".join(f"{s:,} rows" for s in args.sizes) + " |",
             "|---|---|" + "---|" * len(args.sizes)]
    for test in args.tests:
        for scenario in [s for s in args.scenarios if s != "unchanged"]:
            cells = []
            for rows in args.sizes:
                done = [r for r in results if (r["test"], r["rows"], r["scenario"]) == (test, rows, scenario) and r["fresh"]]
                if not done:
                    cells.append("-")
                    continue
                better = sum(r["fresh"][-1] > r["fresh"][0] for r in done)
                gain = sum(r["fresh"][-1] - r["fresh"][0] for r in done) / len(done)
                losses = [a - b for r in done for a, b in zip(r["fresh"], r["fresh"][1:], strict=False)]
                worst = f"{max(losses):+.3f}" if losses else "none deployed"
                cells.append(f"better {rate(better, len(done))}; gain {gain:+.3f}; worst {worst}")
            lines.append(f"| {test} | {scenario} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", nargs="+", default=None, help="drift tests (default: all of config.DRIFT_TESTS)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 2_000, 20_000])
    parser.add_argument("--rules", nargs="+", default=["logistic", "bands"])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--long-runs", type=int, default=2, help="runs of unchanged data for the default test")
    parser.add_argument("--long-ticks", type=int, default=100, help="consecutive ticks of each of those runs")
    parser.add_argument("--short-runs", type=int, default=3, help="runs of unchanged data for the other tests")
    parser.add_argument("--short-ticks", type=int, default=10)
    parser.add_argument("--change-runs", type=int, default=30, help="runs of each change")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 long run of 30 ticks, 1 short run, 10 change runs")
    parser.add_argument("--json", type=Path, help="also write every run's result to this file")
    parser.add_argument("--load", type=Path, nargs="+", help="print the tables of results saved with --json "
                        "(a later file's runs replace an earlier file's runs of the same test, size and change)")
    args = parser.parse_args()
    from riskmonitor import config

    args.default = json.loads((PROJECT_DIR / "config.json").read_text())["drift_test"]
    args.tests = args.tests or list(config.DRIFT_TESTS)
    if args.quick:
        args.long_runs, args.long_ticks, args.short_runs, args.change_runs = 1, 30, 1, 10
    if args.load:
        return print_tables(load(args.load), args)
    jobs = plan(args)
    started = time.perf_counter()
    print(f"{len(jobs)} runs, {sum(j['ticks'] + 1 for j in jobs)} ticks, {args.workers} worker(s); default test "
          f"{args.default}", file=sys.stderr, flush=True)
    results = []
    with multiprocessing.get_context("fork").Pool(min(args.workers, 2)) as pool:
        for result in pool.imap_unordered(run_once, jobs):
            results.append(result)
            if len(results) % 20 == 0:
                print(f"  {len(results)}/{len(jobs)} runs, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results))
    print_tables(results, args)
    print(f"\n{len(jobs)} runs in {time.perf_counter() - started:.0f} s")
    return 0


def load(paths: list[Path]) -> list[dict]:
    """Saved runs; a later file's cells (test, size, change) replace the same cells of earlier files."""
    cells: dict[tuple, list[dict]] = {}
    for path in paths:
        fresh: dict[tuple, list[dict]] = {}
        for run in json.loads(path.read_text()):
            fresh.setdefault((run["test"], run["rows"], run["scenario"]), []).append(run)
        cells.update(fresh)
    return [run for runs in cells.values() for run in runs]


def print_tables(results: list[dict], args) -> int:
    for table in (false_alarm_table, detection_table, adaptation_table):
        print("\n".join(["", *table(results, args)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
