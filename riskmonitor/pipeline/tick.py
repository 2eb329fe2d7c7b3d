"""One tick of the pipeline: ingest new files, check the production model for drift, retrain
and deploy when it has drifted, and record everything under the tick's run id.

    python fullprocess.py           # what cron runs (through execute_fullprocess.sh)
    python fullprocess.py --force   # retrain (and deploy if at least as good) regardless
"""

import argparse
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import datafiles
import db
import decisions
import ingestion
from config import Config, describe_error, exit_now, run_script
from decisions import Challenger, DataDrift, Decision, Gate, ModelDrift
from storage import pipeline_lock

log = logging.getLogger(__name__)
SCRIPT_TIMING = {"ingestion": "ingestion.py", "training": "training.py"}  # stages kept in script_timing


@dataclass(frozen=True)
class Found:
    """What a tick finds before it works."""

    new_files: list
    production: object  # the models row in production, None before the first deployment
    unreported: str | None  # the latest tick that did work, if it was killed before its report was written
    history: datafiles.History  # what the database says was ingested: the data sets must hold it


@dataclass(frozen=True)
class Ingested:
    """What the tick ingested: the ingested_files rows to store, the new rows, and finaldata after the merge."""

    files: tuple[dict, ...]
    new_data: object  # pandas.DataFrame
    index: dict | None  # the data sets' index after the merge (datafiles: rows, statistics), None until read
    summary: str


@dataclass(frozen=True)
class Work:
    """Everything a tick found and decided; one function writes it in one transaction."""

    hex: str
    ingested: Ingested | None = None
    diagnostics: dict = field(default_factory=dict)  # table name -> rows (diagnostics.py)
    drift: ModelDrift | None = None
    data_drift: DataDrift | None = None
    challenger: Challenger | None = None
    gate: Gate | None = None
    champion_hex: str | None = None  # the model in production when the tick started
    decision: Decision | None = None
    batch: object = None  # scoring.Confusion of the production model on this tick's new rows

    @property
    def status(self) -> str:
        """The run's status, decided here only."""
        if self.gate is not None:
            return "deployed" if self.gate.deploy else "kept"
        if self.ingested is not None and not self.ingested.new_data.empty:
            return "no_drift"
        return "no_new_data"

    @property
    def summary(self) -> str:
        """runs.message: one line rendered from the values."""
        return decisions.summary(self.ingested.summary if self.ingested else "", self.decision)

    @property
    def scores(self) -> list[tuple]:
        """(model hex, scoring.Confusion, dataset) of the production model scored by this tick: on its new
        rows (the drift evidence) and in the gate."""
        scores = []
        if self.batch is not None:
            scores.append((self.champion_hex, self.batch, "newdata"))
        if self.gate is not None and self.gate.champion_counts is not None:
            scores.append((self.champion_hex, self.gate.champion_counts, "gate"))
        return scores


@dataclass(frozen=True)
class TickResult:
    """What run_tick returns: the run, its status and decision, and how its report went."""

    hex: str
    status: str
    summary: str
    decision: Decision | None
    report_error: str  # '' when the plots and the PDF were written (or none were due)
    stages: dict[str, float]  # seconds per stage
    drift: ModelDrift | None = None  # the model-drift verdict, with the rule behind it


class Stopwatch:
    """Seconds per stage of one tick (ingestion and training go to script_timing)."""

    def __init__(self):
        self.stages: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[stage] = self.stages.get(stage, 0.0) + time.perf_counter() - started


def run_tick(config: Config, engine, force: bool = False) -> TickResult:
    """Run one tick and return what it did; a failure is recorded in runs, alerted, and raised."""
    clock, run_hex = Stopwatch(), None
    try:
        with time_limit(config.tick_timeout_seconds), db.recorded_run(engine, "fullprocess.py") as run_hex:
            found = _look(config, engine, run_hex)
            datafiles.check_present(config, found.history)  # never train on what is left of lost data sets
            try:
                work = _work(config, engine, run_hex, found, force, clock)
                with clock("record"):
                    _commit(config, engine, work, clock.stages)
            except BaseException:
                _remove_unrecorded_model(config, run_hex)
                raise
    except Exception as exc:
        _alert(config, engine, run_hex, "tick_failed", f"tick {run_hex or '(not started)'} failed: {describe_error(exc)}")
        raise
    log.info("tick %s: %s (%s)", work.hex, work.status, work.summary or "no new files")
    _announce(config, engine, work)
    report_hex = work.hex if work.status in db.WORK_STATUSES else found.unreported
    report_error = ""
    if report_hex:
        with clock("report"):
            report_error = _report(config, engine, report_hex)
    return TickResult(work.hex, work.status, work.summary, work.decision, report_error, clock.stages, work.drift)


def _look(config: Config, engine, run_hex: str) -> Found:
    """Put the production file back if a crash left it out of step; find new files, production, a missing
    report, and what was ingested before."""
    import deployment

    with engine.connect() as conn:
        deployment.restore_production_file(conn, config)
        new_files = ingestion.find_new_files(config, *db.known_files(conn))
        history = datafiles.History(*db.ingestion_history(conn), run_hex=run_hex)
        return Found(new_files, db.production_model(conn), _unreported_run(conn, config), history)


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
    from training import model_path, reference_path

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
    # Data that ingestion.py ingested alone, before any model: the first model is still due.
    untrained = found.production is None and config.finaldata_csv.exists()
    if not (found.new_files or force or untrained):
        return Work(run_hex)
    ingested = _ingest(config, found.new_files, found.history, clock)
    if ingested.new_data.empty and not (force or untrained):
        return Work(run_hex, ingested)  # only quarantined or duplicate files: still no new data
    if ingested.index is None:  # nothing merged this tick: the data sets are the ones on disk
        ingested = replace(ingested, index=datafiles.prepare(config, found.history))
    with clock("diagnostics"):
        rows = _diagnose(config, engine, found.production, ingested)
    return _decide(config, engine, run_hex, found.production, ingested, rows, force, clock)


def _decide(config: Config, engine, run_hex: str, production, ingested: Ingested, rows: dict, force: bool,
            clock: Stopwatch) -> Work:
    """The drift verdicts, and the challenger and the gate's decision when the tick retrains."""
    drift = batch = challenger = gate = None
    if production is not None and not ingested.new_data.empty:
        with clock("drift_check"):
            drift, batch = _check_drift(config, engine, production, ingested.new_data)
    data_drift = _data_drift(config, rows)
    reason = _retrain_reason(config, production, drift, data_drift, force)
    if reason is not None:  # only a retrain reads the history: it trains on it, and describes it exactly
        import diagnostics

        final = datafiles.read_dataset(config.finaldata_csv, config)
        rows = {**rows, **diagnostics.training_data(final, config)}
        window = _retrain_window(config, production, drift, data_drift, ingested.new_data)
        model, challenger = _train(config, run_hex, final, reason, window, clock)
        with clock("evaluation"):
            gate = _evaluate(config, engine, production, model, window, after_drift=bool(drift and drift.drifted))
    champion = production.hex if production is not None else None
    decision = decisions.tick_decision(run_hex, drift, data_drift, challenger, gate, champion)
    return Work(run_hex, ingested, rows, drift, data_drift, challenger, gate, champion, decision, batch)


def _ingest(config: Config, new_files, history: datafiles.History, clock: Stopwatch) -> Ingested:
    """Validate and merge the new files (stored rows; the files are counted as ingested only at commit)."""
    with clock("ingestion"):
        result = ingestion.ingest_files(config, new_files, history)
    return Ingested(tuple(result.records), result.new_data.to_pandas(), result.index, ingestion.summary(result))


def _diagnose(config: Config, engine, production, ingested: Ingested) -> dict[str, list[dict]]:
    """Statistics of the merged data, and data drift of the new rows against production's training data."""
    import diagnostics

    return diagnostics.tick_diagnostics(config, ingested.new_data, ingested.index,
                                        production.hex if production else None, engine)


def _data_drift(config: Config, rows: dict[str, list[dict]]) -> DataDrift | None:
    """The data-drift verdict of the diagnostics' rows (PSI, or KS D beyond its noise); None when not measured."""
    measured = rows.get("data_drift", [])
    if not measured:
        return None
    drifted = tuple(r["feature"] for r in measured if r["drifted"])
    return DataDrift(drifted=bool(drifted), features=drifted, threshold=config.psi_threshold)


def _check_drift(config: Config, engine, production, new_data):
    """Score the production model on the new rows and apply the configured drift test to them and to its
    earlier batches since deployment: (ModelDrift, this batch's scoring.Confusion)."""
    from scoring import Confusion, confusion, detect_model_drift, load_production_model

    with engine.connect() as conn:
        earlier = [Confusion(*(getattr(row, c) for c in db.COUNTS)) for row in db.batches_since_deployment(conn, production.hex)]
        _, model = load_production_model(conn, config)
    batch = confusion(model, new_data, config)
    has_counts = production.tp is not None  # a model recorded before counts were kept has only its F1
    reference = Confusion(*(getattr(production, c) for c in db.COUNTS)) if has_counts else None
    verdict = detect_model_drift([*earlier, batch], production.f1_score, reference, config)
    drift = ModelDrift(test=verdict.test, new_f1=verdict.f1, new_rows=verdict.rows, reference_f1=verdict.reference_f1,
                       reference_rows=reference.rows if reference else None, threshold=verdict.threshold,
                       drifted=verdict.drifted, rule=verdict.rule, std_error=verdict.std_error)
    return drift, batch


def _retrain_reason(config: Config, production, drift: ModelDrift | None, data: DataDrift | None,
                    force: bool) -> str | None:
    """Why the tick trains a challenger; None when it does not."""
    if production is None:
        return "no model in production yet"
    if drift is not None and drift.drifted:
        return "model drift"
    if data is not None and data.drifted and config.data_drift_retrains:
        return "data drift"
    return "forced (--force)" if force else None


def _retrain_window(config: Config, production, drift: ModelDrift | None, data: DataDrift | None,
                    new_data) -> int | None:
    """How many of the latest new rows showed the drift (None: no drift, learn all of history): the rows
    the drift test pooled, or this tick's rows for data drift alone. The challenger learns the training
    part of at least retrain_window_min_rows of them; the gate judges on the held-out part of the window
    alone: the new regime, not a mix."""
    if production is None:
        return None  # the first model: all of history
    if drift is not None and drift.drifted:
        return drift.new_rows
    return len(new_data) if data is not None and data.drifted else None  # --force on unchanged data: all of history


def _train(config: Config, run_hex: str, final, reason: str, window: int | None, clock: Stopwatch):
    """Train on the latest rows of the window (all ingested data without one) and save the model file:
    (model, Challenger)."""
    import sklearn.linear_model  # noqa: F401 - loaded before the clock starts: import time is not training time

    from training import train_and_save

    learned = None if window is None else max(window, config.retrain_window_min_rows)
    first_row = 0 if learned is None else max(0, len(final) - round(learned * (1 - config.test_fraction)))
    with clock("training"):
        model, path, sha = train_and_save(final.iloc[first_row:], config, run_hex)
    return model, Challenger(run_hex, path, sha, len(final) - first_row, reason, first_row)


def _evaluate(config: Config, engine, production, model, window: int | None, after_drift: bool) -> Gate:
    """The gate: challenger against champion on held-out rows of the window (recent rows neither trained on),
    paired (scoring.gate): non-inferiority after a drift verdict, superiority without one."""
    from scoring import confusion, evaluation_data, gate, load_production_model

    held_out = evaluation_data(config)
    if window is not None:
        held_out = held_out.tail(max(1, round(window * config.test_fraction)))
    new = confusion(model, held_out, config)
    if production is None:
        return Gate(new.f1, None, new.rows, rule="first model", deploy=True, challenger_counts=new,
                    reason="no model in production: the first model is deployed")
    needed = round(config.retrain_window_min_rows * config.test_fraction)
    if window is not None and len(held_out) < needed:  # no gate yet: the drift evidence keeps accumulating
        return Gate(new.f1, None, new.rows, rule="too few recent held-out rows", deploy=False, challenger_counts=new,
                    reason=f"kept: {len(held_out)} held-out rows of the latest {window} new rows are too few to "
                           f"judge the challenger on the new regime (at least {needed})")
    with engine.connect() as conn:
        _, old_model = load_production_model(conn, config)
    verdict = gate(model, old_model, held_out, config, after_drift)
    rule = "non-inferiority" if after_drift else "superiority"  # the full wording is in the reason
    return Gate(verdict.new.f1, verdict.old.f1, verdict.new.rows, rule=rule, deploy=verdict.deploy,
                reason=verdict.describe(), margin=-verdict.bar, difference=verdict.difference,
                interval_low=verdict.lower, challenger_counts=verdict.new, champion_counts=verdict.old)


def _commit(config: Config, engine, work: Work, stages: dict[str, float]) -> None:
    """The tick's one transaction: what it found and decided, the deployment, and its status.

    Files count as ingested only here, after their rows are stored: a killed tick is redone.
    """
    import deployment

    with engine.begin() as conn:
        _record(conn, config, work, stages)
        if work.status == "deployed":  # the production file is replaced first, the flags flip in this transaction
            deployment.deploy_model(conn, config, work.challenger.hex, work.hex, "fullprocess.py", work.summary)
        db.finish_run(conn, work.hex, work.status, work.summary)


def _record(conn, config: Config, work: Work, stages: dict[str, float]) -> None:
    """The rows of what the tick found and decided, in the caller's transaction."""
    db.record_files(conn, work.hex, list(work.ingested.files) if work.ingested else [])
    for model_hex, counts, dataset in work.scores:
        db.record_f1(conn, work.hex, model_hex, counts.f1, dataset, counts.rows, counts.as_row())
    db.record_timing(conn, work.hex, {script: stages[stage] for stage, script in SCRIPT_TIMING.items() if stage in stages})
    if work.challenger is not None:
        from training import record_model

        c, counts = work.challenger, work.gate.challenger_counts
        record_model(conn, config, work.hex, c.path, c.sha256, counts.f1, c.train_rows, counts.as_row(), c.first_row)
    db.record_diagnostics(conn, work.hex, work.diagnostics)
    if work.decision is not None:
        decisions.record(conn, work.decision)


def _report(config: Config, engine, run_hex: str) -> str:
    """Plots and the PDF of a committed tick; '' or why they failed (what the tick did stays recorded)."""
    import reporting

    try:
        reporting.write_report(config, engine, run_hex)
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
    if work.decision is not None and work.decision.drift_found:
        events.append("drift")
    if work.status == "deployed":
        events.append("deployed")
    if events:
        _alert(config, engine, work.hex, ",".join(events), f"tick {work.hex} {work.status}: {work.summary}", work.decision)


def _alert(config: Config, engine, run_hex: str | None, event: str, text: str, decision: Decision | None = None) -> None:
    """Tell a person (alerts.py: bounded, never raises for the webhook's sake)."""
    import alerts

    alerts.send(config, engine, run_hex, event, f"Churn risk monitor: {text}", decision)


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
    exit_now(run_script(main))
