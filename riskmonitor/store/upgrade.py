"""What dbsetup.py does beside the schema's upgrade (schema.upgrade): copy into the database what
earlier releases kept only on disk (model files, their drift references, report PDFs)."""

import gzip
import logging

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.store import db, storage

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
