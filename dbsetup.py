"""Set up the database, or upgrade it to the newest schema revision, without losing a row.

    python dbsetup.py   # also what the Procfile's release phase runs before each deploy

A database made by the first release (its tables, no revision) is adopted and upgraded too.
"""

import sys

import db
from config import load_config, run_script


def main() -> int:
    config = load_config()
    where = db.make_engine(config.database_url).url.render_as_string(hide_password=True)
    before, after = db.upgrade(config.database_url, adopt_first_release=True)
    if before == after:
        print(f"{where}: already at revision {after}, nothing to upgrade")
    else:
        print(f"{where}: upgraded from {before or 'an empty database'} to revision {after}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
