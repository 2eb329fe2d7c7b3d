"""Set up the database, or upgrade it to the newest schema revision, without losing a row.

    python dbsetup.py                     # also what the Procfile's release phase runs before each deploy
    python dbsetup.py --import-datasets   # once, on the host that holds a file-based release's data sets

A database made by the first release (its tables, no revision) is adopted and upgraded too. Run
on the tick's host, it then copies what earlier releases kept only on disk (model files, their
drift references, report PDFs) into the database, where the API reads them.
"""

import argparse
import sys

from riskmonitor.config import load_config, run_script
from riskmonitor.data import exports
from riskmonitor.store import db
from riskmonitor.store.upgrade import copy_earlier_artifacts


def main(argv: list[str] | None = None) -> int:
    """Upgrade the schema (and copy earlier releases' files into the database); --import-datasets too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-datasets", action="store_true",
                        help="load the data sets of a file-based release (ingesteddata/finaldata.csv, "
                             "testdata/testdata.csv) into the database: run it on the host that holds them")
    args = parser.parse_args(argv)
    config = load_config()
    engine = db.make_engine(config.database_url)
    where = engine.url.render_as_string(hide_password=True)
    before, after = db.upgrade(config.database_url, adopt_first_release=True)
    if before == after:
        print(f"{where}: already at revision {after}, nothing to upgrade")
    else:
        print(f"{where}: upgraded from {before or 'an empty database'} to revision {after}")
    copied = copy_earlier_artifacts(config, engine)
    if copied:
        print(f"copied {copied} model, reference and report file(s) of earlier releases into the database")
    if args.import_datasets:
        with db.recorded_run(engine, "dbsetup.py") as run_hex:
            text = exports.import_files(config, engine, run_hex)
            with engine.begin() as conn:
                db.finish_run(conn, run_hex, "done", text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
