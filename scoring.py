"""Score the production model on the held-out test data and record its F1.

    python scoring.py

Scoring is riskmonitor.model.scoring's; the drift tests that read the scores are in
riskmonitor.drift.model_drift.
"""

import sys

from riskmonitor.config import load_config, run_script, setup_logging
from riskmonitor.model.scoring import confusion, evaluation_data, load_production_model
from riskmonitor.store import db, storage


def main() -> int:
    """Score the production model on the test data and record the score."""
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "scoring.py") as run_hex:
        frame = evaluation_data(config, engine)
        with engine.begin() as conn:
            row, model = load_production_model(conn, config)
            counts = confusion(model, frame, config)
            score = counts.f1
            db.record_f1(conn, run_hex, row.hex, score, "testdata", len(frame), counts.as_row())
            db.finish_run(conn, run_hex, "done", f"production model {row.hex}: F1 {score:.4f} on {len(frame)} rows")
    print(f"production model {row.hex}: F1 {score:.4f} on {len(frame)} test rows")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
