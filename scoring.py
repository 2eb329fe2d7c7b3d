"""Score a model (F1) and decide whether the production model has drifted."""

import logging
import sys

import db
import storage
from config import Config, run_script

log = logging.getLogger(__name__)


def score_model(model, frame, config: Config) -> float:
    """F1 of the model's predictions on frame (0 when nothing is predicted or present)."""
    from sklearn.metrics import f1_score

    predicted = model.predict(frame[list(config.features)])
    return float(f1_score(frame[config.label], predicted, zero_division=0))


def evaluation_data(config: Config):
    """The held-out test data; the training data only while nothing has been held out yet."""
    from ingestion import read_dataset

    frame = read_dataset(config.testdata_csv, config)
    if frame.empty:
        log.warning("testdata.csv has no rows yet: scoring on the training data instead")
        frame = read_dataset(config.finaldata_csv, config)
    if frame.empty:
        raise ValueError("no ingested data to score on: add CSV files to the input folder")
    return frame


def load_production_model(conn, config: Config):
    """(models row, model) of production; ModelIntegrityError if the file does not match."""
    row = db.production_model(conn)
    if row is None:
        raise LookupError("no model is deployed yet: run fullprocess.py first")
    return row, storage.load_model(config.production_model, row.sha256)


def detect_model_drift(new_f1: float, new_rows: int, recorded_f1: float, earlier: list[float], config: Config):
    """Apply config.drift_test to the new F1 (on new_rows rows), the production model's recorded F1
    and its earlier scores; a decisions.ModelDrift."""
    import numpy as np

    from decisions import ModelDrift

    if config.drift_test == "raw":
        threshold, rule = recorded_f1, "its F1 when deployed"
    elif config.drift_test == "parametric":
        threshold = float(np.mean(earlier) - config.parametric_sigmas * np.std(earlier, ddof=1 if len(earlier) > 1 else 0))
        rule = f"mean - {config.parametric_sigmas:g} std of {len(earlier)} earlier score(s)"
    else:
        q1, q3 = np.percentile(earlier, [25, 75])
        threshold = float(q1 - config.nonparametric_iqr_factor * (q3 - q1))
        rule = f"Q1 - {config.nonparametric_iqr_factor:g} IQR of {len(earlier)} earlier score(s)"
    return ModelDrift(test=config.drift_test, new_f1=new_f1, new_rows=new_rows, reference_f1=recorded_f1,
                      reference_rows=None, threshold=threshold, drifted=new_f1 < threshold, rule=rule)


def main() -> int:
    """Score the production model on the test data and record the score."""
    from config import load_config, setup_logging

    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "scoring.py") as run_hex:
        frame = evaluation_data(config)
        with engine.begin() as conn:
            row, model = load_production_model(conn, config)
            score = score_model(model, frame, config)
            db.record_f1(conn, run_hex, row.hex, score, "testdata", len(frame))
            db.finish_run(conn, run_hex, "done", f"production model {row.hex}: F1 {score:.4f} on {len(frame)} rows")
    print(f"production model {row.hex}: F1 {score:.4f} on {len(frame)} test rows")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
