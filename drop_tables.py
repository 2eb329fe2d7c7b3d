"""Drop every table of the system, after asking (--yes skips the question)."""

import argparse
import sys

from riskmonitor.config import load_config, run_script
from riskmonitor.store import db


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--yes", action="store_true", help="drop without asking")
    args = parser.parse_args(argv)
    engine = db.make_engine(load_config().database_url)
    where = engine.url.render_as_string(hide_password=True)
    if not args.yes:
        try:
            answer = input(f"Drop all tables ({', '.join(db.metadata.tables)}) in {where}? [y/N] ")
        except EOFError:  # no terminal (cron, a closed stdin): nobody can answer, so nothing is dropped
            raise EOFError("no answer on standard input (no terminal): nothing dropped; pass --yes to drop") from None
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing dropped")
            return 1
    db.drop_tables(engine)
    print(f"dropped all tables in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
