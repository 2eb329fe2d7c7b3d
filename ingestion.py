"""Find new CSV files by content hash, validate them, and merge their rows into the data sets.

    python ingestion.py             # ingest the input folder's new files, as a run of its own
    python ingestion.py --rebuild   # rebuild finaldata.csv and testdata.csv from the ingested files

Bad files are quarantined: recorded with the reason, never moved, changed or deleted. The work is
riskmonitor.data.ingest's; this command parses its arguments and records the run.
"""

import argparse
import time

from riskmonitor.config import exit_now, load_config, run_script, setup_logging
from riskmonitor.data.datafiles import History
from riskmonitor.data.ingest import find_new_files, ingest_files, rebuild, summary
from riskmonitor.store import db, storage

__all__ = ["find_new_files", "ingest_files", "main"]  # what tests and the tick call, from riskmonitor.data.ingest


def main(argv: list[str] | None = None) -> int:
    """Ingest the new files of the input folder alone, as a run of its own (or --rebuild the data sets)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild finaldata.csv and testdata.csv from the ingested files still in the input folder")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "ingestion.py") as run_hex:
        if args.rebuild:
            text = rebuild(config, engine)
            with engine.begin() as conn:
                db.finish_run(conn, run_hex, "done", text)
            print(text)
            return 0
        with engine.connect() as conn:
            new_files = find_new_files(config, *db.known_files(conn))
            history = History(*db.ingestion_history(conn), run_hex=run_hex)
        started = time.perf_counter()
        result = ingest_files(config, new_files, history)
        seconds = time.perf_counter() - started
        with engine.begin() as conn:
            db.record_files(conn, run_hex, result.records)
            db.record_timing(conn, run_hex, {"ingestion.py": seconds} if new_files else {})
            db.finish_run(conn, run_hex, "done" if new_files else "no_new_data", summary(result))
    print(summary(result))
    return 0


if __name__ == "__main__":
    exit_now(run_script(main))
