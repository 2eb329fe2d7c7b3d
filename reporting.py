"""Plots in static/ and the PDF report reports/report_<hex>.pdf of a tick that ingested data.

    python reporting.py   # regenerate the plots and the PDF of the latest such tick

The report is riskmonitor.reporting.report's (the PDF's layout riskmonitor.reporting.pdf's).
"""

import sys

from riskmonitor.config import load_config, run_script, setup_logging
from riskmonitor.reporting.report import write_report
from riskmonitor.store import db, storage


def main() -> int:
    """Regenerate the plots and the PDF of the latest tick that ingested data (or training.py run)."""
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        run = db.latest_work_run(conn, training_runs=True)
    if run is None:
        raise LookupError("no tick has ingested data and no model has been trained yet: run fullprocess.py first")
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine):  # a tick may be drawing them too
        path = write_report(config, engine, run.hex)
        with engine.begin() as conn:  # drawn now: a failure a tick recorded is over
            db.set_report_error(conn, run.hex, None)
    print(f"report of tick {run.hex}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
