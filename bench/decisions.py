"""Measure the tick's decisions: false alarms on unchanged data, detection of real changes, and
whether what gets deployed is better on the new distribution. Ticks go through the real
`fullprocess.run_tick`, in-process, in temporary projects on SQLite, with the PDF, the plots and
the outdated-packages check switched off.

    python bench/decisions.py                      # the full benchmark (long: see --quick)
    python bench/decisions.py --quick              # fewer ticks and runs, for a first look
    python bench/decisions.py --tests pooled --sizes 2000 --scenarios unchanged flip30

Each run starts from a model trained on the 8,000 training rows of a first file of 10,000 (the
other 2,000 are held out), then feeds ticks of one batch each. A "retrain" is a challenger trained (a
decision that names one). Unchanged data gives the false-retrain rate (the default test: runs of
--long-ticks consecutive ticks; the others: shorter runs). Each change comes after 5 unchanged ticks
(a late change; --no-late: at once) and is fed for 8 ticks at 200 rows, 6 at larger sizes, 24 for the
gradual drift: the detection rate within 3 ticks, a better model in production within 8 (200 rows) or
2 ticks, and the retrains and alerts of each drift episode. After each change run, the model in
production and the first model are scored on a fresh sample of 50,000 rows of the new distribution,
and each deployment against the model it replaced on a fresh sample of the regime of its tick. Rates
come with their 95% Clopper-Pearson interval.
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
SCENARIOS = {  # datagen.generate options of each tick's batch (a function: of the changed tick's number)
    "unchanged": {},
    "flip10": {"flip": 0.1},  # about 0.05 F1 lower
    "flip30": {"flip": 0.3},
    "flip100": {"flip": 1.0},
    "shift3": {"shift": 3.0},
    "lastmonth1.2": {"scale": {"lastmonth_activity": 1.2}},
    "concept": {"concept": True},
    # the bands rule ignores lastyear_activity: tripling it is data drift that costs the model nothing
    "benign": {"rule": "bands", "scale": {"lastyear_activity": 3.0}},
    # a gradual, non-monotone drift: the activity columns scale up and down by tick, labels partly noise
    "gradual": lambda tick: {"shift": 1 + 0.25 * (tick % 8 if tick % 16 < 8 else 8 - tick % 8), "flip": min(0.05 * tick, 0.4)},
}
LATE = 5  # unchanged ticks before a change ("late changes": the drift comes after a settled deployment)
ADAPT_TICKS = {200: 8}  # a better model in production within this many changed ticks (2 at larger sizes)


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


def batch_options(scenario: str, tick: int) -> dict:
    options = SCENARIOS[scenario]
    return options(tick) if callable(options) else dict(options)


def run_once(job: dict) -> dict:
    """One run: a first model, job['lead'] unchanged batches, then job['ticks'] batches of the scenario; per
    changed tick what was decided (drift found, a challenger trained, deployed, alerts sent), and fresh-sample F1s."""
    import datagen
    from riskmonitor import alerts
    from riskmonitor.config import load_config
    from riskmonitor.pipeline.tick import run_tick
    from riskmonitor.store import db

    quiet_reports()
    sent = []
    alerts.send = lambda config, engine, run_hex, event, text, decision=None: sent.append(event)  # one message
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(make_project(Path(tmp), job["test"]))
        engine = db.make_engine(config.database_url)
        datagen.generate(FIRST_ROWS, seed=job["seed"], rule=job["rule"]).to_csv(
            config.input_folder_path / "first.csv", index=False)
        first = run_tick(config, engine)
        deployed, ticks, changed_deployments = [first.hex], [], []
        for tick_number in range(job["lead"] + job["ticks"]):
            changed = tick_number - job["lead"]
            options = {"rule": job["rule"], **(batch_options(job["scenario"], changed) if changed >= 0 else {})}
            batch = datagen.generate(job["rows"], seed=job["seed"] * 1000 + tick_number + 1, **options)
            batch.to_csv(config.input_folder_path / f"batch_{tick_number:04d}.csv", index=False)
            del sent[:]
            tick = run_tick(config, engine)
            d = tick.decision
            if tick.status == "deployed":
                deployed.append(tick.hex)
                changed_deployments.append(changed)
            ticks.append({"changed": changed >= 0, "found": bool(d and (d.model_drifted or d.data_drifted)),
                          "retrain": bool(d and d.challenger_hex), "deployed": tick.status == "deployed",
                          "alerts": list(sent), "verdict": d.verdict if d else None,
                          "episode": d.episode if d else None, "model_drift": bool(d and d.model_drifted),
                          "data_drift": bool(d and d.data_drifted), "eval_rows": d.eval_rows if d else None,
                          "difference": d.f1_difference if d else None, "low": d.difference_low if d else None})
        fresh = _fresh_scores(config, job, deployed) if job["fresh"] else []
        losses = _deployment_losses(config, job, deployed, changed_deployments) if job["fresh"] else []
        engine.dispose()
    retrains = [t["retrain"] for t in ticks if t["changed"]]
    return {**job, "ticks_log": ticks, "retrains": retrains, "deploys": len(deployed) - 1, "fresh": fresh,
            "losses": losses}


def _fresh_scores(config, job: dict, deployed: list[str], tick: int | None = None) -> list[float]:
    """F1 of each model deployed in the run, in order, on a fresh sample of the batches' distribution at a
    changed tick (default: the last)."""
    import datagen
    from riskmonitor.model import fitted
    from riskmonitor.model.scoring import score_model
    from riskmonitor.model.training import model_path
    from riskmonitor.store import storage

    tick = job["ticks"] - 1 if tick is None else tick
    options = {"rule": job["rule"], **batch_options(job["scenario"], tick)}
    sample = datagen.generate(FRESH_ROWS, seed=job["seed"] * 1000 + 999, **options)
    scores = []
    for model_hex in deployed:
        path = model_path(config, model_hex)
        scores.append(score_model(fitted.load(path, storage.sha256_file(path)), sample, config))
    return scores


def _deployment_losses(config, job: dict, deployed: list[str], changed_at: list[int]) -> list[float]:
    """Each deployment after the change: the F1 it lost against the model it replaced, both on a fresh sample
    of the regime of the tick that deployed it (the gradual drift's regime moves on after it)."""
    losses = []
    for n, tick in enumerate(changed_at, 1):  # deployed[n] replaced deployed[n - 1]
        if tick >= 0:
            old, new = _fresh_scores(config, job, deployed[n - 1:n + 1], tick)
            losses.append(old - new)
    return losses


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact two-sided 95% interval of a binomial rate."""
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return low, high


def changed_ticks(scenario: str, rows: int) -> int:
    """Changed ticks per run: 24 for the gradual drift, 8 at 200 rows (the small-batch target), else 6."""
    return 24 if scenario == "gradual" else 8 if rows <= 200 else 6


def plan(args) -> list[dict]:
    """Every run of the benchmark as a job for the worker pool, the longest first."""
    jobs = []
    for test in args.tests:
        long_run = test == args.default
        for rows in args.sizes:
            if "unchanged" in args.scenarios:
                runs, ticks = (args.long_runs, args.long_ticks) if long_run else (args.short_runs, args.short_ticks)
                for rule in args.rules:
                    jobs += [dict(test=test, rows=rows, rule=rule, scenario="unchanged", lead=0, ticks=ticks, seed=1 + r,
                                  fresh=False) for r in range(runs)]
            for scenario in [s for s in args.scenarios if s != "unchanged"]:
                runs = args.change_runs if test == args.default else min(args.change_runs, args.short_change_runs)
                jobs += [dict(test=test, rows=rows, scenario=scenario, lead=LATE if args.late else 0,
                              rule="bands" if scenario == "benign" else args.rules[r % len(args.rules)],
                              ticks=changed_ticks(scenario, rows), seed=101 + r, fresh=True) for r in range(runs)]
    return sorted(jobs, key=lambda j: -j["rows"] * (j["lead"] + j["ticks"]) ** 1.5)


def rate(k: int, n: int) -> str:
    low, high = clopper_pearson(k, n)
    return f"{k / n:6.1%} ({k}/{n}, CI {low:.1%}-{high:.1%})" if n else "-"


def cells(results: list[dict], args, scenarios, value) -> list[str]:
    """One table row per test and scenario, one cell per size: value(runs of that cell) or '-'."""
    lines = []
    for test in args.tests:
        for scenario in scenarios:
            row = []
            for rows in args.sizes:
                done = [r for r in results if (r["test"], r["rows"], r["scenario"]) == (test, rows, scenario)]
                row.append(value(done, rows) if done else "-")
            lines.append(f"| {test} | {scenario} | " + " | ".join(row) + " |")
    return lines


def header(title: str, args, first: str = "change") -> list[str]:
    return [title, "", f"| test | {first} | " + " | ".join(f"{s:,} rows" for s in args.sizes) + " |",
            "|---|---|" + "---|" * len(args.sizes)]


def changed(run: dict) -> list[dict]:
    return [t for t in run["ticks_log"] if t["changed"]]


def unchanged(run: dict) -> list[dict]:
    """The ticks of unchanged data: all of an unchanged run's, and those before a change."""
    return run["ticks_log"] if run["scenario"] == "unchanged" else [t for t in run["ticks_log"] if not t["changed"]]


def false_alarm_table(results: list[dict], args) -> list[str]:
    """Unchanged data: the share of ticks that trained a challenger, and of the first 5 after the deployment."""
    def value(done, rows):
        ticks = [t for r in done for t in unchanged(r)]
        early = [t for r in done for t in unchanged(r)[:5]]
        deploys = sum(t["deployed"] for t in ticks)
        return (f"{rate(sum(t['retrain'] for t in ticks), len(ticks))}; first 5 ticks "
                f"{rate(sum(t['retrain'] for t in early), len(early))}; {deploys} deployed")
    lines = header("## False retrains on unchanged data (share of ticks that trained a challenger; 95% Clopper-Pearson "
                   "interval): the unchanged runs, and every run's unchanged ticks before its change (all)", args, "data")
    for test in args.tests:
        for label, keep in (("unchanged runs", lambda r: r["scenario"] == "unchanged"), ("all", lambda r: True)):
            row = []
            for rows in args.sizes:
                done = [r for r in results if (r["test"], r["rows"]) == (test, rows) and keep(r)]
                row.append(value(done, rows) if any(unchanged(r) for r in done) else "-")
            lines.append(f"| {test} | {label} | " + " | ".join(row) + " |")
    return lines


def detection_table(results: list[dict], args) -> list[str]:
    """Drift found (model drift, or data drift) within 3 changed ticks; the mean ticks to it."""
    def value(done, rows):
        firsts = [next(i for i, t in enumerate(changed(r), 1) if t["found"]) for r in done
                  if any(t["found"] for t in changed(r)[:3])]
        mean = f"; {sum(firsts) / len(firsts):.2f} ticks" if firsts else ""
        return f"{rate(len(firsts), len(done))}{mean}"
    scenarios = [s for s in args.scenarios if s not in ("unchanged", "benign", "gradual")]
    return [*header("## Detection within 3 ticks of a change (runs whose drift was found; mean ticks to it)", args),
            *cells(results, args, scenarios, value)]


def adaptation_table(results: list[dict], args) -> list[str]:
    """A better model in production within 8 changed ticks at 200 rows (2 at larger sizes), on fresh rows
    of the new distribution; and the worst loss of any deployment against the model it replaced."""
    def value(done, rows):
        within = ADAPT_TICKS.get(rows, 2)
        better = sum(any(t["deployed"] for t in changed(r)[:within]) and r["fresh"][-1] > r["fresh"][0] for r in done)
        # Deployments after the change, each against the model it replaced, on the new distribution.
        losses = [loss for r in done for loss in r["losses"]]
        harmful = sum(loss > 0.01 for loss in losses)
        worst = f"{max(losses):+.3f} ({harmful} of {len(losses)} lose > 0.01)" if losses else "none deployed"
        gain = sum(r["fresh"][-1] - r["fresh"][0] for r in done) / len(done)
        return f"within {within}: {rate(better, len(done))}; gain {gain:+.3f}; worst {worst}"
    scenarios = [s for s in args.scenarios if s != "unchanged"]
    return [*header("## After a change: a better model in production (than the first, on 50,000 fresh rows of the "
                    "new distribution) within 8 changed ticks at 200 rows, 2 at larger sizes; worst: the largest loss "
                    "in F1 of a deployment against the model it replaced, both on fresh rows of the regime of the tick that "
                    "deployed it", args),
            *cells(results, args, scenarios, value)]


def episode_table(results: list[dict], args) -> list[str]:
    """Retrains and alerts per drift episode; the benign shift's target (at most 2 retrains and 1 alert in 6 ticks)."""
    def value(done, rows):
        episodes = {}
        for n, r in enumerate(done):
            for t in changed(r):
                if t["episode"] is not None:
                    e = episodes.setdefault((n, t["episode"]), [0, 0])
                    e[0] += t["retrain"]
                    e[1] += len(t["alerts"])
        per = (f"{sum(e[0] for e in episodes.values()) / len(episodes):.2f} retrains, "
               f"{sum(e[1] for e in episodes.values()) / len(episodes):.2f} alerts per episode ({len(episodes)})"
               if episodes else "no episode")
        calm = sum(sum(t["retrain"] for t in changed(r)[:6]) <= 2 and sum(len(t["alerts"]) for t in changed(r)[:6]) <= 1
                   for r in done)
        degrading = sum(any(t["verdict"] == "degrading" for t in changed(r)) for r in done)
        return f"{per}; ≤2 retrains and ≤1 alert in 6 ticks {rate(calm, len(done))}; degrading said in {degrading}"
    scenarios = [s for s in args.scenarios if s != "unchanged"]
    return [*header("## Drift episodes: retrains and alerts (messages: drift and deployed in one tick are one) per "
                    "episode, and runs with at most 2 retrains and 1 alert in their first 6 changed ticks", args),
            *cells(results, args, scenarios, value)]


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
    parser.add_argument("--change-runs", type=int, default=100, help="runs of each change, default test")
    parser.add_argument("--short-change-runs", type=int, default=30, help="runs of each change, other tests")
    parser.add_argument("--no-late", dest="late", action="store_false",
                        help=f"changes from the first tick after the deployment (default: after {LATE} unchanged ticks)")
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
        args.long_runs, args.long_ticks, args.short_runs, args.change_runs = 1, 24, 1, 10
    if args.load:
        return print_tables(load(args.load), args)
    jobs = plan(args)
    started = time.perf_counter()
    print(f"{len(jobs)} runs, {sum(j['lead'] + j['ticks'] + 1 for j in jobs)} ticks, {args.workers} worker(s); default test "
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
    for table in (false_alarm_table, detection_table, adaptation_table, episode_table):
        print("\n".join(["", *table(results, args)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
