"""One tick of the pipeline (fullprocess.py): look for new files, ingest them, decide (riskmonitor.pipeline.decide),
record everything under the tick's run id in one transaction, deploy, then report and alert.

What only a tick with new data needs (deciding, diagnostics, the report, alerts) is imported where it is
used: a tick with nothing to do loads the store, the data sets and the registry alone.
"""

import dataclasses
import logging
from contextlib import contextmanager

from riskmonitor.config import Config, describe_error
from riskmonitor.data import datasets, exports, ingest, rows, sources
from riskmonitor.drift import decisions, episodes
from riskmonitor.drift.decisions import Decision
from riskmonitor.model import registry
from riskmonitor.model.training import model_path, record_model, reference_path
from riskmonitor.pipeline.work import Found, Ingested, Stopwatch, TickResult, Work
from riskmonitor.store import db, uploads

log = logging.getLogger(__name__)
SCRIPT_TIMING = {"ingestion": "ingestion.py", "training": "training.py"}  # stages kept in script_timing


def run_tick(config: Config, engine, force: bool = False) -> TickResult:
    """Run one tick and return what it did; a failure is recorded in runs, alerted, and raised."""
    clock, run_hex = Stopwatch(), None
    try:
        with time_limit(config.tick_timeout_seconds), db.recorded_run(engine, "fullprocess.py") as run_hex:
            found = _look(config, engine, run_hex)
            try:
                work = _work(config, engine, run_hex, found, force, clock)
                with clock("record"):
                    work = _commit(config, engine, work, found.state, clock.stages)
            except datasets.LostRace as exc:  # the other tick's commit stands; this one leaves nothing behind
                _remove_unrecorded_model(config, run_hex)
                work = Work(run_hex, lost=str(exc))
                with engine.begin() as conn:
                    db.finish_run(conn, run_hex, work.status, work.summary)
            except BaseException:
                _remove_unrecorded_model(config, run_hex)
                raise
    except Exception as exc:
        _alert(config, engine, run_hex, "tick_failed", f"tick {run_hex or '(not started)'} failed: {describe_error(exc)}")
        raise
    log.info("tick %s: %s (%s)", work.hex, work.status, work.summary or "no new files")
    with clock("export"):
        exports.catch_up(config, engine, work.ingested.new if work.ingested and not work.lost else None)
    _announce(config, engine, work)
    report_hex = work.hex if work.status in db.WORK_STATUSES else found.unreported
    report_error = ""
    if report_hex:
        with clock("report"):
            report_error = _report(config, engine, report_hex)
    return TickResult(work.hex, work.status, work.summary, work.decision, report_error, clock.stages, work.drift)


def _look(config: Config, engine, run_hex: str) -> Found:
    """Put the production file back if a crash left it out of step; find new files, production, a missing
    report, and the data sets' state (a file-based release's must be imported first)."""
    with engine.connect() as conn:
        datasets.check_imported(conn)
        state = datasets.state(conn)  # read first: the commit checks that no other commit came after
        registry.restore_production_file(conn, config)
        new_files = sources.find_new_files(config, conn, *db.known_files(conn))
        return Found(new_files, db.production_model(conn), _unreported_run(conn, config), state)


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


def _remove_unrecorded_model(config: Config, run_hex: str) -> None:
    """A failed tick's model was never recorded: its files would be orphans in models/."""
    for path in (model_path(config, run_hex), reference_path(config, run_hex)):
        if path.exists():
            log.warning("removing %s: the tick that trained it failed", path.name)
            path.unlink()


def _unreported_run(conn, config: Config) -> str | None:
    """The latest tick that did work if it was killed before its report was written (a report that
    failed has its error recorded instead, and is not drawn again)."""
    run = db.latest_work_run(conn)
    if run is None or run.report_error is not None or (config.reports_path / f"report_{run.hex}.pdf").exists():
        return None
    return run.hex


def _work(config: Config, engine, run_hex: str, found: Found, force: bool, clock: Stopwatch) -> Work:
    """Ingest and diagnose; then decide (drift, and a challenger when there is no model, on drift or forced)."""
    # Rows that ingestion.py stored alone, before any model: the first model is still due.
    untrained = found.production is None and found.state.rows > 0
    if not (found.new_files or force or untrained):
        return Work(run_hex)
    ingested = _ingest(config, engine, found, clock)
    if ingested.new_data.empty and not (force or untrained):
        return Work(run_hex, ingested)  # only quarantined or duplicate files: still no new data
    with clock("diagnostics"):
        diagnosed = _diagnose(config, engine, found.production, ingested)
    from riskmonitor.pipeline.decide import decide

    return decide(config, engine, run_hex, found.production, ingested, diagnosed, force, clock, found.state.rows)


def _ingest(config: Config, engine, found: Found, clock: Stopwatch) -> Ingested:
    """Validate the new files and find the rows they add: stored, and the files counted as ingested, only
    by the tick's commit. The training rows' statistics include them."""
    with clock("ingestion"), engine.connect() as conn:
        result = ingest.ingest_files(config, found.new_files, conn, found.state.rows)
        stats = datasets.stats(conn, config)
    new = result.new
    if new is not None and len(new.table):
        stats = rows.merge_stats(stats, rows.column_stats(new.table, config, ~new.held_out))
    frame = (new.table if new is not None else rows.empty_table(config)).to_pandas()
    return Ingested(tuple(result.records), new, frame, stats, ingest.summary(result))


def _diagnose(config: Config, engine, production, ingested: Ingested) -> dict[str, list[dict]]:
    """Statistics of the data sets with the new rows, and data drift of the new rows against production's
    training data."""
    from riskmonitor.reporting import diagnostics

    return diagnostics.tick_diagnostics(config, ingested.new_data, ingested.stats,
                                        production.hex if production else None, engine)


def _commit(config: Config, engine, work: Work, read: datasets.State, stages: dict[str, float]) -> Work:
    """The tick's one transaction: its new rows, what it found and decided, the deployment, and its status.

    A tick that found files or trained commits only if no other commit came after the data sets' state it
    read (datasets.commit: LostRace). Files count as ingested only here, with their rows: a killed tick is redone.
    """
    with engine.begin() as conn:
        if work.ingested is not None or work.challenger is not None:
            datasets.commit(conn, config, work.ingested.new if work.ingested else None, work.hex, read)
        work = _record(conn, config, work, stages)
        if work.status == "deployed":  # the production file is replaced first, the flags flip in this transaction
            registry.deploy_model(conn, config, work.challenger.hex, work.hex, "fullprocess.py", work.summary)
        db.finish_run(conn, work.hex, work.status, work.summary)
    return work


def _record(conn, config: Config, work: Work, stages: dict[str, float]) -> Work:
    """The rows of what the tick found and decided, in the caller's transaction; the work as recorded (a
    new drift episode's id in its decision)."""
    if work.ingested is not None:
        db.record_files(conn, work.hex, list(work.ingested.files))
        uploads.settle(conn, work.hex)
    for model_hex, counts, dataset in work.scores:
        db.record_f1(conn, work.hex, model_hex, counts.f1, dataset, counts.rows, counts.as_row())
    db.record_timing(conn, work.hex, {script: stages[stage] for stage, script in SCRIPT_TIMING.items() if stage in stages})
    if work.challenger is not None:
        c, counts = work.challenger, work.gate.challenger_counts
        record_model(conn, config, work.hex, c.path, c.sha256, counts.f1, c.train_rows, counts.as_row(), c.first_row)
    db.record_diagnostics(conn, work.hex, work.diagnostics)
    if work.episode is not None:  # a new episode gets its id here: the decision names it
        episode_id = episodes.write(conn, work.episode, work.hex, work.champion_hex)
        work = dataclasses.replace(work, decision=dataclasses.replace(work.decision, episode=episode_id))
    if work.decision is not None:
        decisions.record(conn, work.decision)
    return work


def _report(config: Config, engine, run_hex: str) -> str:
    """Plots and the PDF of a committed tick; '' or why they failed (what the tick did stays recorded)."""
    from riskmonitor.reporting import report

    try:
        report.write_report(config, engine, run_hex)
        return ""
    except Exception as exc:  # not hidden: logged, recorded in runs.report_error, alerted; main() exits non-zero
        error = describe_error(exc)
        log.exception("tick %s: report failed: %s", run_hex, error)
        with engine.begin() as conn:
            db.set_report_error(conn, run_hex, error)
        _alert(config, engine, run_hex, "report_failed", f"the report of tick {run_hex} failed: {error}")
        return error


def _announce(config: Config, engine, work: Work) -> None:
    """Tell a person about drift and a deployment: one message for the tick."""
    events = []
    if work.episode is not None:  # one alert per episode and outcome: drift when it opens, degrading once
        events += work.episode.alerts
    elif work.decision is not None and work.decision.drift_found:  # data drift that opens none (data_drift_retrains off)
        events.append("drift")
    if work.status == "deployed":
        events.append("deployed")
    if events:
        _alert(config, engine, work.hex, ",".join(events), f"tick {work.hex} {work.status}: {work.summary}", work.decision)


def _alert(config: Config, engine, run_hex: str | None, event: str, text: str, decision: Decision | None = None) -> None:
    """Tell a person (alerts.py: bounded, never raises for the webhook's sake)."""
    from riskmonitor import alerts

    alerts.send(config, engine, run_hex, event, f"Churn risk monitor: {text}", decision)
