"""Set up the database, or upgrade it to the newest schema revision, without losing a row.

    python dbsetup.py   # also what the Procfile's release phase runs before each deploy

A database made by the first release (its tables, no revision) is adopted and upgraded too. Run
on the tick's host, it then copies what earlier releases kept only on disk (model files, their
drift references, report PDFs) into the database, where the API reads them.
"""

import gzip
import logging
import sys

import sqlalchemy as sa

import db
import storage
from config import Config, load_config, run_script

log = logging.getLogger(__name__)


def copy_earlier_artifacts(config: Config, engine: sa.Engine) -> int:
    """Store the models, references and reports found on disk that the database lacks; how many."""
    copied = 0
    with engine.begin() as conn:
        stored = {(kind, hex_id) for kind, hex_id in conn.execute(sa.select(db.artifacts.c.kind, db.artifacts.c.hex))}
        for model in conn.execute(sa.select(db.models)).all():
            path, reference = config.project_dir / model.path, config.output_model_path / f"model_{model.hex}_reference.csv"
            if ("model", model.hex) not in stored and path.is_file():
                if storage.sha256_file(path) != model.sha256:
                    log.warning("not copied: %s does not match the sha256 recorded for model %s", model.path, model.hex)
                    continue
                copied += bool(db.store_artifact(conn, "model", model.hex, path.read_bytes()))
            if ("reference", model.hex) not in stored and reference.is_file():
                copied += bool(db.store_artifact(conn, "reference", model.hex, gzip.compress(reference.read_bytes())))
        run_hexes = set(conn.execute(sa.select(db.runs.c.hex)).scalars())
        for pdf in sorted(config.reports_path.glob("report_*.pdf"), key=lambda p: p.stat().st_mtime_ns):
            run_hex = pdf.stem.removeprefix("report_")
            if run_hex in run_hexes and ("report", run_hex) not in stored:
                copied += bool(db.store_artifact(conn, "report", run_hex, pdf.read_bytes()))
        db.prune_reports(conn, config.keep_reports)
    return copied


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
