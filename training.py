"""Train the churn model on the training rows (finaldata) and record it (not deployed): logistic regression on the
scaled features, missing values imputed.

    python training.py

The model is riskmonitor.model.training's; this command records the run.
"""

import sys
import time

from riskmonitor.config import load_config, run_script, setup_logging
from riskmonitor.data import datasets
from riskmonitor.data.stats import training_data
from riskmonitor.model.scoring import confusion, evaluation_data
from riskmonitor.model.training import record_model, train_and_save, train_model
from riskmonitor.store import db, storage

__all__ = ["main", "train_model"]


def main() -> int:
    """Train on the training rows, save models/model_<hex>.pkl and record it (not deployed)."""
    import sklearn.linear_model  # noqa: F401 - loaded before the clock starts, as in a tick

    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "training.py") as run_hex:
        with engine.connect() as conn:
            frame = datasets.frame(conn, config, False)
        started = time.perf_counter()
        model, path, sha = train_and_save(frame, config, run_hex)
        seconds = time.perf_counter() - started
        counts = confusion(model, evaluation_data(config, engine), config)
        score = counts.f1
        with engine.begin() as conn:  # what a tick records for its training: deploying the model makes it production's
            record_model(conn, config, run_hex, path, sha, score, len(frame), counts.as_row())
            db.record_diagnostics(conn, run_hex, training_data(frame, config))
            db.record_timing(conn, run_hex, {"training.py": seconds})
            db.finish_run(conn, run_hex, "done", f"trained model {run_hex} on {len(frame)} rows, F1 {score:.4f}")
    print(f"model {run_hex}: trained on {len(frame)} rows, F1 on test data {score:.4f}, saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
