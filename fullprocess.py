"""One tick of the pipeline: ingest new files, check the production model for drift, retrain
and deploy when it has drifted, and record everything under the tick's run id.

    python fullprocess.py           # what cron runs (through execute_fullprocess.sh)
    python fullprocess.py --force   # retrain (and deploy if at least as good) regardless
"""

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field

import db
import ingestion
from config import Config

log = logging.getLogger(__name__)


@dataclass
class Tick:
    """What a tick decided, written to the database in one transaction at its end."""

    hex: str
    status: str = "no_new_data"
    notes: list[str] = field(default_factory=list)
    files: list[dict] = field(default_factory=list)
    scores: list[tuple] = field(default_factory=list)  # (model_hex, f1, dataset, rows)
    timings: dict[str, float] = field(default_factory=dict)
    trained: tuple | None = None  # (path, sha256, f1 on test data, training rows)
    deploy: bool = False


def run_tick(config: Config, engine, force: bool = False) -> Tick:
    """Run one tick and return what it did; a failure is recorded in runs and raised."""
    with db.recorded_run(engine, "fullprocess.py") as run_hex:
        tick = Tick(run_hex)
        with engine.connect() as conn:
            _restore(conn, config)
            new_files = ingestion.find_new_files(config, *db.known_files(conn))
            production = db.production_model(conn)
        if new_files or force:
            _work(tick, config, engine, new_files, production, force)
        with engine.begin() as conn:
            _record(conn, config, tick)
    log.info("tick %s: %s (%s)", tick.hex, tick.status, "; ".join(tick.notes) or "no new files")
    return tick


def _restore(conn, config: Config) -> None:
    import deployment

    if deployment.restore_production_file(conn, config):
        conn.commit()


def _work(tick: Tick, config: Config, engine, new_files, production, force: bool) -> None:
    """Ingest, score, decide; train when there is no model, on drift, or when forced."""
    started = time.perf_counter()
    result = ingestion.ingest_files(config, new_files)
    tick.timings["ingestion.py"] = time.perf_counter() - started
    tick.files = result.records
    tick.notes.append(ingestion.summary(result))
    if result.new_data.empty and not force:
        return  # only quarantined or duplicate files: still no new data
    tick.status = "no_drift"
    if production is not None and not result.new_data.empty:
        drifted = _check_drift(tick, config, engine, production, result.new_data)
        if not (drifted or force):
            return
    _retrain(tick, config, engine, production)


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


def _retrain(tick: Tick, config: Config, engine, production) -> None:
    """Train on all ingested data; deploy if at least as good as production on held-out rows."""
    import storage
    from scoring import evaluation_data, load_production_model, score_model
    from training import model_path, relative_to_project, train_model

    started = time.perf_counter()
    frame = ingestion.read_dataset(config.finaldata_csv, config)
    model = train_model(frame, config)
    path = model_path(config, tick.hex)
    sha = storage.save_model(model, path)
    tick.timings["training.py"] = time.perf_counter() - started
    held_out = evaluation_data(config)
    new_f1 = score_model(model, held_out, config)
    tick.trained = (relative_to_project(path, config), sha, new_f1, len(frame))
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


def _record(conn, config: Config, tick: Tick) -> None:
    """Everything the tick decided, in the caller's one transaction."""
    import deployment

    db.record_files(conn, tick.hex, tick.files)
    for model_hex, score, dataset, rows in tick.scores:
        db.record_f1(conn, tick.hex, model_hex, score, dataset, rows)
    for step, seconds in tick.timings.items():
        conn.execute(db.script_timing.insert().values(file=step, timing=seconds, hex=tick.hex))
    if tick.trained:
        db.record_model(conn, tick.hex, *tick.trained)
    if tick.deploy:
        deployment.deploy_model(conn, config, tick.hex, tick.hex)
    db.finish_run(conn, tick.hex, tick.status, "; ".join(tick.notes))


def main(argv: list[str] | None = None) -> int:
    from config import load_config, setup_logging

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="retrain regardless of drift")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    try:
        tick = run_tick(config, db.make_engine(config.database_url), force=args.force)
    except Exception as exc:  # already recorded in runs; say why on stderr and exit non-zero for cron
        log.error("tick failed: %s: %s", type(exc).__name__, exc)
        return 1
    print(f"{tick.hex} {tick.status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
