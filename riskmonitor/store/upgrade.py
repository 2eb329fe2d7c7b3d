"""What dbsetup.py does beside the schema's upgrade (schema.upgrade): copy into the database what
earlier releases kept only on disk (model files, their drift references, report PDFs), and the web
process's read-only PostgreSQL role."""

import gzip
import logging
import re

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


WEB_INSERTS = ("uploads", "upload_chunks")  # POST /batches: the only rows the web process adds
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def grant_web_role(engine: sa.Engine, name: str, password: str | None) -> str:
    """Create or update a PostgreSQL login role with what the web process needs and nothing more: SELECT on
    every table (and on those later revisions add), INSERT on the uploads; no UPDATE, DELETE or DDL. Its
    password is `password`, or none (then only trust or peer authentication lets it in). What was done."""
    if engine.dialect.name != "postgresql":
        raise ValueError("--web-role is for PostgreSQL: on SQLite the database file's permissions are the only boundary")
    if not ROLE_NAME.fullmatch(name):
        raise ValueError(f"--web-role: {name!r} is not a plain role name (lower-case letters, digits and _, "
                         "at most 63)")
    quote = engine.dialect.identifier_preparer.quote
    role = quote(name)
    with engine.begin() as conn:
        db.lock_migrations(conn)  # not while dbsetup.py elsewhere changes the tables
        found = conn.execute(sa.text("SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = :name"),
                             {"name": name}).first()
        if found is not None and any(found):
            raise ValueError(f"--web-role: the role {name} may create databases or roles or is a superuser: "
                             "name a role of its own for the web process")
        if found is None:
            conn.execute(sa.text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(sa.text(f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD "
                             + (":password" if password else "NULL")), {"password": password} if password else {})
        database = quote(conn.execute(sa.text("SELECT current_database()")).scalar())
        schema = quote(conn.execute(sa.text("SELECT current_schema()")).scalar())
        inserts = ", ".join(quote(table) for table in WEB_INSERTS)
        sequences = [conn.execute(sa.select(sa.func.pg_get_serial_sequence(table, "id"))).scalar()
                     for table in WEB_INSERTS if "id" in db.metadata.tables[table].c]  # the ids of the rows it adds
        for statement in (
            f"GRANT CONNECT ON DATABASE {database} TO {role}",
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {role}",
            f"GRANT INSERT ON {inserts} TO {role}",
            *(f"GRANT USAGE ON SEQUENCE {sequence} TO {role}" for sequence in sequences),
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT ON TABLES TO {role}",
        ):
            conn.execute(sa.text(statement))
    return (f"{'updated' if found else 'created'} the PostgreSQL role {name}: SELECT on every table, INSERT on "
            f"{', '.join(WEB_INSERTS)}, {'a password' if password else 'no password'}")
