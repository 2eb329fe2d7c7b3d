"""One tick of the pipeline: ingest new files, check the production model for drift, retrain
and deploy when it has drifted, and record everything under the tick's run id.

    python fullprocess.py           # what cron runs (through execute_fullprocess.sh)
    python fullprocess.py --force   # retrain (and deploy if at least as good) regardless
"""

import argparse
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import datafiles
import db
import ingestion
from config import Config, describe_error, run_script
from storage import pipeline_lock

log = logging.getLogger(__name__)
SCRIPT_TIMING = {"ingestion": "ingestion.py", "training": "training.py"}  # stages kept in script_timing


@dataclass
class Tick:
    """What a tick decided, written to the database in one transaction at its end."""

    hex: str
    status: str = "no_new_data"
    notes: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    scores: list[tuple] = field(default_factory=list)  # (model_hex, f1, dataset, rows)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of this tick
    trained: tuple | None = None  # (path, sha256, f1 on test data, training rows)
    deploy: bool = False
    diagnostics: dict[str, list[dict]] = field(default_factory=dict)  # table name -> rows (diagnostics.py)
    report_error: str = ""  # the plots or the PDF failed after the tick committed


def run_tick(config: Config, engine, force: bool = False) -> Tick:
    """Run one tick and return what it did; a failure is recorded in runs and raised."""
    import deployment

    with time_limit(config.tick_timeout_seconds):
        with db.recorded_run(engine, "fullprocess.py") as run_hex:
            tick = Tick(run_hex)
            with engine.connect() as conn:
                deployment.restore_production_file(conn, config)  # a killed tick may have left it out of step
                new_files = ingestion.find_new_files(config, *db.known_files(conn))
                production = db.production_model(conn)
                unreported = _unreported_run(conn, config)
                history = datafiles.History(*db.ingestion_history(conn), run_hex=run_hex)
            datafiles.check_present(config, history)  # never train on what is left of lost data sets
            # Data that ingestion.py ingested alone, before any model: the first model is still due.
            untrained = production is None and config.finaldata_csv.exists()
            _work_and_record(tick, config, engine, new_files, production, force or untrained, history)
        log.info("tick %s: %s (%s)", tick.hex, tick.status, "; ".join(tick.notes) or "no new files")
        report_hex = tick.hex if tick.status in db.WORK_STATUSES else unreported
        if report_hex:
            with _timed(tick, "report"):
                tick.report_error = _report(config, engine, report_hex)
    return tick


def _work_and_record(tick: Tick, config: Config, engine, new_files, production, force: bool, history) -> None:
    """The tick's work and its one transaction; a failure removes the model it trained (never recorded)."""
    try:
        if new_files or force:
            _work(tick, config, engine, new_files, production, force, history)
        with _timed(tick, "record"), engine.begin() as conn:
            _record(conn, config, tick)
    except BaseException:
        _remove_unrecorded_model(config, tick)
        raise


class TickTimeout(RuntimeError):
    """A tick ran longer than tick_timeout_seconds."""


@contextmanager
def time_limit(seconds: int):
    """Raise TickTimeout in this thread after `seconds` (SIGALRM; only the main thread gets signals)."""
    import signal
    import threading

    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TickTimeout(f"the tick ran longer than its time limit of {seconds} s (tick_timeout_seconds)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _remove_unrecorded_model(config: Config, tick: Tick) -> None:
    """A failed tick's model was never recorded: its files would be orphans in models/."""
    from training import model_path, reference_path

    for path in (model_path(config, tick.hex), reference_path(config, tick.hex)):
        if path.exists():
            log.warning("removing %s: the tick that trained it failed", path.name)
            path.unlink()


def _unreported_run(conn, config: Config) -> str | None:
    """The latest tick that did work if it was killed before its report was written."""
    run = db.latest_work_run(conn)
    if run is None or (config.reports_path / f"report_{run.hex}.pdf").exists() or "report failed" in (run.message or ""):
        return None
    return run.hex


@contextmanager
def _timed(tick: Tick, stage: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        tick.stages[stage] = tick.stages.get(stage, 0.0) + time.perf_counter() - started


def _work(tick: Tick, config: Config, engine, new_files, production, force: bool, history) -> None:
    """Ingest, score, decide; train when there is no model, on drift, or when forced."""
    with _timed(tick, "ingestion"):
        result = ingestion.ingest_files(config, new_files, history)
    tick.files = result.records
    tick.notes.append(ingestion.summary(result))
    if result.new_data.empty and not force:
        return  # only quarantined or duplicate files: still no new data
    tick.status = "no_drift"
    final = datafiles.load(config, history)[0] if result.finaldata is None else result.finaldata
    with _timed(tick, "diagnostics"):
        _diagnose(tick, config, production, result.new_data, final)
    drifted = [row["feature"] for row in tick.diagnostics.get("data_drift", []) if row["drifted"]]
    if drifted:
        tick.notes.append(f"data drift (PSI >= {config.psi_threshold:g}) in {', '.join(drifted)}")
    if production is not None and not result.new_data.empty:
        with _timed(tick, "drift_check"):
            drifted = _check_drift(tick, config, engine, production, result.new_data)
        if not (drifted or force):
            return
    import sklearn.linear_model  # noqa: F401 - loaded before the clock starts: import time is not training time

    from training import train_and_save

    with _timed(tick, "training"):
        model, path, sha = train_and_save(final, config, tick.hex)
    with _timed(tick, "evaluation"):
        new_f1 = _evaluate(tick, config, engine, production, model)
    tick.trained = (path, sha, new_f1, len(final))


def _diagnose(tick: Tick, config: Config, production, new_data, final) -> None:
    """Statistics of the merged data, and data drift of the new rows against production's training data."""
    import diagnostics

    tick.diagnostics = diagnostics.tick_diagnostics(config, new_data, final, production.hex if production else None)


def _check_drift(tick: Tick, config: Config, engine, production, new_data) -> bool:
    """Score the production model on the new rows and apply the configured drift test."""
    from scoring import detect_model_drift, load_production_model, score_model

    with engine.connect() as conn:
        earlier = db.model_scores(conn, production.hex)
        _, model = load_production_model(conn, config)
    new_f1 = score_model(model, new_data, config)
    tick.scores.append((production.hex, new_f1, "newdata", len(new_data)))
    drifted, explanation = detect_model_drift(new_f1, production.f1_score, earlier, config)
    tick.notes.append(explanation)
    return drifted


def _evaluate(tick: Tick, config: Config, engine, production, model) -> float:
    """Decide to deploy the new model if it is at least as good as production on held-out rows; its F1."""
    from scoring import evaluation_data, load_production_model, score_model

    held_out = evaluation_data(config)
    new_f1 = score_model(model, held_out, config)
    old_f1 = None
    if production is not None:
        with engine.connect() as conn:
            _, old_model = load_production_model(conn, config)
        old_f1 = score_model(old_model, held_out, config)
        tick.scores.append((production.hex, old_f1, "testdata", len(held_out)))
    tick.deploy = old_f1 is None or new_f1 >= old_f1
    tick.status = "deployed" if tick.deploy else "kept"
    versus = "no model in production" if old_f1 is None else f"production {old_f1:.4f}"
    tick.notes.append(f"new model F1 {new_f1:.4f} on {len(held_out)} held-out rows vs {versus}: {tick.status}")
    return new_f1


def _record(conn, config: Config, tick: Tick) -> None:
    """Everything the tick decided, in the caller's one transaction."""
    import deployment

    db.record_files(conn, tick.hex, tick.files)
    for model_hex, score, dataset, rows in tick.scores:
        db.record_f1(conn, tick.hex, model_hex, score, dataset, rows)
    db.record_timing(conn, tick.hex, {script: tick.stages[stage] for stage, script in SCRIPT_TIMING.items()
                                      if stage in tick.stages})
    if tick.trained:
        from training import record_model

        record_model(conn, config, tick.hex, *tick.trained)
    db.record_diagnostics(conn, tick.hex, tick.diagnostics)
    if tick.deploy:
        deployment.deploy_model(conn, config, tick.hex, tick.hex, "fullprocess.py", "; ".join(tick.notes) or None)
    db.finish_run(conn, tick.hex, tick.status, "; ".join(tick.notes))


def _report(config: Config, engine, run_hex: str) -> str:
    """Plots and the PDF of a committed tick; '' or why they failed (what the tick did stays recorded)."""
    import reporting

    try:
        reporting.write_report(config, engine, run_hex)
        return ""
    except Exception as exc:  # not hidden: logged, noted in runs, and main() exits non-zero for cron
        error = describe_error(exc)
        log.exception("tick %s: report failed: %s", run_hex, error)
        with engine.begin() as conn:
            db.append_run_message(conn, run_hex, f"report failed: {error}")
        return error


def main(argv: list[str] | None = None) -> int:
    from config import load_config, setup_logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="retrain regardless of drift")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with pipeline_lock(config.project_dir, wait=False, engine=engine) as locked:
        if not locked:
            log.info("another tick or step (on this host or another) holds the pipeline lock: this tick has nothing to do")
            return 0
        tick = run_tick(config, engine, force=args.force)
    print(f"{tick.hex} {tick.status}" + (f" (report failed: {tick.report_error})" if tick.report_error else ""))
    return 1 if tick.report_error else 0


if __name__ == "__main__":
    sys.exit(run_script(main))
