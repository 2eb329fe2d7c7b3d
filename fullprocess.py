"""One tick of the pipeline: ingest new files, check the production model for drift, retrain
and deploy when it has drifted, and record everything under the tick's run id.

    python fullprocess.py           # what cron runs (through execute_fullprocess.sh)
    python fullprocess.py --force   # retrain (and deploy if at least as good) regardless

The tick is riskmonitor.pipeline.tick's (run_tick); this command takes the lock and reports the outcome.
"""

import argparse
import logging

from riskmonitor.config import exit_now, load_config, run_script, setup_logging
from riskmonitor.pipeline.tick import run_tick
from riskmonitor.store import db
from riskmonitor.store.storage import pipeline_lock

__all__ = ["main", "run_tick"]
log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run one tick under the pipeline lock; 1 when its report failed (what it did stays recorded)."""
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

