"""Set up the database, or upgrade it to the newest schema revision, without losing a row.

    python dbsetup.py                     # also what the Procfile's release phase runs before each deploy
    python dbsetup.py --import-datasets   # once, on the host that holds a file-based release's data sets
    python dbsetup.py --convert-models --trust-stored-pickles   # once: an earlier release's pickled models
    python dbsetup.py --web-role drat_web  # PostgreSQL: the web process's role (WEB_ROLE_PASSWORD, if set)

A database made by the first release (its tables, no revision) is adopted and upgraded too. Run
on the tick's host, it then copies what earlier releases kept only on disk (model files, their
drift references, report PDFs) into the database, where the API reads them.

Models are stored as plain numbers, and no process loads a pickle. Those an earlier release stored as
pickles are converted by --convert-models, which unpickles them and so runs any code they hold: it needs
--trust-stored-pickles, your word that only this system has ever written to this database.
"""

import argparse
import sys

from riskmonitor.config import env_setting, load_config, run_script
from riskmonitor.data import exports
from riskmonitor.model import convert
from riskmonitor.store import db
from riskmonitor.store.upgrade import copy_earlier_artifacts, grant_web_role


def main(argv: list[str] | None = None) -> int:
    """Upgrade the schema (and copy earlier releases' files into the database); --import-datasets too."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-datasets", action="store_true",
                        help="load the data sets of a file-based release (ingesteddata/finaldata.csv, "
                             "testdata/testdata.csv) into the database: run it on the host that holds them")
    parser.add_argument("--convert-models", action="store_true",
                        help="rewrite the models that an earlier release stored as pickles as plain numbers "
                             "(needs --trust-stored-pickles)")
    parser.add_argument("--trust-stored-pickles", action="store_true",
                        help="with --convert-models: unpickle the stored models, which runs any code they hold")
    parser.add_argument("--web-role", metavar="NAME",
                        help="PostgreSQL: create or update the login role NAME for the web process: SELECT on every "
                             "table, INSERT on the uploads, nothing else (its password: WEB_ROLE_PASSWORD, if set)")
    args = parser.parse_args(argv)
    if args.convert_models != args.trust_stored_pickles:
        parser.error("--convert-models unpickles the stored models, which runs any code in them: give it with "
                     "--trust-stored-pickles, and only if no one but this system has ever written to the database")
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
    with engine.connect() as conn:
        pickled = convert.stored_pickles(conn)
    if pickled and args.convert_models:
        converted = convert.convert_stored_pickles(config, engine)
        print(f"converted {len(converted)} model(s) from pickles to plain numbers: {', '.join(converted)}")
    elif pickled:
        print(f"{len(pickled)} model(s) are pickles of an earlier release, which are never loaded: run python "
              "dbsetup.py --convert-models --trust-stored-pickles if this database is trusted, or retrain")
    if args.web_role:
        print(grant_web_role(engine, args.web_role, env_setting(config.project_dir, "WEB_ROLE_PASSWORD")))
    if args.import_datasets:
        with db.recorded_run(engine, "dbsetup.py") as run_hex:
            text = exports.import_files(config, engine, run_hex)
            with engine.begin() as conn:
                db.finish_run(conn, run_hex, "done", text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
