"""Set up the database, or upgrade it to the newest schema revision, without losing a row.

    python dbsetup.py   # also what the Procfile's release phase runs before each deploy

A database made by the first release (its tables, no revision) is adopted and upgraded too. Run
on the tick's host, it then copies what earlier releases kept only on disk (model files, their
drift references, report PDFs) into the database, where the API reads them.
"""

import sys

from riskmonitor.config import load_config, run_script
from riskmonitor.store import db
from riskmonitor.store.upgrade import copy_earlier_artifacts


def main() -> int:
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
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
