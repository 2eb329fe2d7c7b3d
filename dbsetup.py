"""Create every table the system uses (idempotent; the steps also do it on first use)."""

import sys

import db
from config import load_config, run_script


def main() -> int:
    config = load_config()
    db.create_tables(db.make_engine(config.database_url))
    print(f"tables ready: {', '.join(db.metadata.tables)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
