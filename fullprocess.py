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
    scores: list[tuple] = field(default_factory=list)  # (model_hex, scoring.Confusion, dataset)
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage of this tick
    trained: tuple | None = None  # (path, sha256, scoring.Confusion on held-out rows, training rows, first row)
    deploy: bool = False
    diagnostics: dict[str, list[dict]] = field(default_factory=dict)  # table name -> rows (diagnostics.py)
    drift: object = None  # scoring.DriftVerdict of the production model on this tick's rows
    data_drifted: list[str] = field(default_factory=list)  # features with a data-drift verdict
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
    """Ingest, score, decide; train when there is no model, on model or data drift, or when forced."""
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
    model_drifted = False
    if production is not None and not result.new_data.empty:
        with _timed(tick, "drift_check"):
            model_drifted = _check_drift(tick, config, engine, production, result.new_data)
    data_retrains = bool(tick.data_drifted) and config.data_drift_retrains
    if production is not None and not (model_drifted or data_retrains or force):
        return
    import sklearn.linear_model  # noqa: F401 - loaded before the clock starts: import time is not training time

    from training import train_and_save

    window = _retrain_window(tick, config, production, result.new_data, model_drifted)
    learned = None if window is None else max(window, config.retrain_window_min_rows)
    first_row = 0 if learned is None else max(0, len(final) - round(learned * (1 - config.test_fraction)))
    with _timed(tick, "training"):
        model, path, sha = train_and_save(final.iloc[first_row:], config, tick.hex)
    with _timed(tick, "evaluation"):
        counts = _evaluate(tick, config, engine, production, model, window, model_drifted)
    tick.trained = (path, sha, counts, len(final) - first_row, first_row)


def _diagnose(tick: Tick, config: Config, production, new_data, final) -> None:
    """Statistics of the merged data, and data drift of the new rows against production's training data."""
    import diagnostics

    tick.diagnostics = diagnostics.tick_diagnostics(config, new_data, final, production.hex if production else None)
    drifted = [row for row in tick.diagnostics.get("data_drift", []) if row["drifted"]]
    tick.data_drifted = [row["feature"] for row in drifted]
    if drifted:
        action = "retrain" if config.data_drift_retrains else "no retrain: data_drift_retrains is off"
        tick.notes.append(f"data drift ({action}) in " + ", ".join(
            f"{row['feature']} (KS D {row['statistic']:.3f}, PSI {row['psi']:.3f})" for row in drifted))


def _check_drift(tick: Tick, config: Config, engine, production, new_data) -> bool:
    """Score the production model on the new rows and apply the configured drift test to them and
    to its earlier batches since deployment."""
    from scoring import Confusion, confusion, detect_model_drift, load_production_model

    with engine.connect() as conn:
        earlier = [Confusion(*(getattr(row, c) for c in db.COUNTS)) for row in db.batches_since_deployment(conn, production.hex)]
        _, model = load_production_model(conn, config)
    counts = confusion(model, new_data, config)
    tick.scores.append((production.hex, counts, "newdata"))
    has_counts = production.tp is not None  # a model recorded before counts were kept has only its F1
    reference = Confusion(*(getattr(production, c) for c in db.COUNTS)) if has_counts else None
    tick.drift = detect_model_drift([*earlier, counts], production.f1_score, reference, config)
    tick.notes.append(tick.drift.describe())
    return tick.drift.drifted


def _retrain_window(tick: Tick, config: Config, production, new_data, model_drifted: bool) -> int | None:
    """How many of the latest new rows showed the drift (None: no drift, learn all of history): the
    rows of the batches the drift test pooled, or this tick's rows for data drift alone. The
    challenger learns the training part of at least retrain_window_min_rows of them; the gate
    judges on the held-out part of the window alone: the new regime, not a mix."""
    if production is None or not (model_drifted or tick.data_drifted):
        return None  # the first model, or --force on unchanged data: all of history
    window = tick.drift.rows if model_drifted else len(new_data)
    tick.notes.append(f"retraining on the latest {max(window, config.retrain_window_min_rows)} new rows, "
                      f"judged on the held-out part of the latest {window}")
    return window


def _evaluate(tick: Tick, config: Config, engine, production, model, window: int | None, after_drift: bool):
    """The gate: challenger against champion on held-out rows of the window (recent rows neither
    trained on); the challenger's confusion counts there (its drift reference once deployed)."""
    from scoring import confusion, evaluation_data, gate, load_production_model

    held_out = evaluation_data(config)
    if window is not None:
        held_out = held_out.tail(max(1, round(window * config.test_fraction)))
    if production is None:
        new = confusion(model, held_out, config)
        tick.deploy, tick.status = True, "deployed"
        tick.notes.append(f"new model F1 {new.f1:.4f} on {len(held_out)} held-out rows vs no model in production: deployed")
        return new
    needed = round(config.retrain_window_min_rows * config.test_fraction)
    if window is not None and len(held_out) < needed:  # no gate row: the drift evidence keeps accumulating
        tick.status = "kept"
        tick.notes.append(f"kept: {len(held_out)} held-out rows of the latest {window} new rows are too few to "
                          f"judge the challenger on the new regime (at least {needed})")
        return confusion(model, held_out, config)
    with engine.connect() as conn:
        _, old_model = load_production_model(conn, config)
    verdict = gate(model, old_model, held_out, config, after_drift)
    tick.scores.append((production.hex, verdict.old, "gate"))
    tick.deploy = verdict.deploy
    tick.status = "deployed" if tick.deploy else "kept"
    tick.notes.append(verdict.describe())
    return verdict.new


def _record(conn, config: Config, tick: Tick) -> None:
    """Everything the tick decided, in the caller's one transaction."""
    import deployment

    db.record_files(conn, tick.hex, tick.files)
    for model_hex, counts, dataset in tick.scores:
        db.record_f1(conn, tick.hex, model_hex, counts.f1, dataset, counts.rows, counts.as_row())
    db.record_timing(conn, tick.hex, {script: tick.stages[stage] for stage, script in SCRIPT_TIMING.items()
                                      if stage in tick.stages})
    if tick.trained:
        from training import record_model

        path, sha, counts, train_rows, first_row = tick.trained
        record_model(conn, config, tick.hex, path, sha, counts.f1, train_rows, counts.as_row(), first_row)
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
