"""Find new CSV files by content hash, validate them, and store the rows they add to the data sets.

    python ingestion.py            # ingest the new files (input folder or bucket, uploads), as a run of its own
    python ingestion.py --export   # rewrite finaldata.csv and testdata.csv from the database

Bad files are quarantined: recorded with the reason, never moved, changed or deleted. The work is
riskmonitor.data.ingest's (the rows stored by riskmonitor.data.datasets); this command records the run.
"""

import argparse
import time

from riskmonitor.config import exit_now, load_config, run_script, setup_logging
from riskmonitor.data import datasets, exports
from riskmonitor.data.ingest import ingest_files, summary
from riskmonitor.data.sources import find_new_files
from riskmonitor.store import db, storage, uploads

__all__ = ["find_new_files", "ingest_files", "main"]  # what tests and the tick call, from riskmonitor.data


def main(argv: list[str] | None = None) -> int:
    """Ingest the new files of the input folder alone, as a run of its own (or --export the data sets)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--export", action="store_true",
                        help="rewrite finaldata.csv and testdata.csv from the data sets in the database")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    if args.export:
        db.ensure_schema(engine)
        written = exports.update(config, engine, rewrite=True)
        print("rewrote " + ", ".join(f"{name} ({rows} row(s))" for name, rows in written.items()))
        return 0
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "ingestion.py") as run_hex:
        with engine.connect() as conn:
            datasets.check_imported(conn)
            read = datasets.state(conn)
            new_files = find_new_files(config, conn, *db.known_files(conn))
            started = time.perf_counter()
            result = ingest_files(config, new_files, conn, read.rows)
        with engine.begin() as conn:  # the rows, the files and the run in one transaction
            datasets.commit(conn, config, result.new, run_hex, read)
            db.record_files(conn, run_hex, result.records)
            uploads.settle(conn, run_hex)
            db.record_timing(conn, run_hex, {"ingestion.py": time.perf_counter() - started} if new_files else {})
            db.finish_run(conn, run_hex, "done" if new_files else "no_new_data", summary(result))
    exports.catch_up(config, engine, result.new)
    print(summary(result))
    return 0


if __name__ == "__main__":
    exit_now(run_script(main))
