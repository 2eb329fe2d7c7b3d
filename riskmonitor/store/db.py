"""The queries the steps, the API and the reports share, each in its caller's connection or
transaction. The tables and the schema's revision live in schema.py; they are imported here so
that callers need one module: `db.runs`, `db.ensure_schema`.
"""

import datetime as dt
import json
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from riskmonitor.config import describe_error
from riskmonitor.store.schema import (  # noqa: F401 - the schema, for callers of db
    COUNTS,
    SCHEMA_REVISION,
    SchemaOutOfDate,
    UTCDateTime,
    alembic_config,
    alembic_version,
    alert_attempts,
    artifacts,
    data_drift,
    dataset_rows,
    dataset_state,
    dataset_stats,
    decisions,
    deployments,
    drop_tables,
    ensure_schema,
    episodes,
    f1,
    feature_stats,
    ingested_files,
    lock_migrations,
    make_engine,
    metadata,
    migration_engine,
    missing_data,
    models,
    outdated_packages,
    package_checks,
    runs,
    schema_revision,
    script_timing,
    upgrade,
)

log = logging.getLogger(__name__)
MESSAGE_CHARS = 4000  # runs.message is served by /health and /runs: bounded, whatever a file holds
PIPELINE_LOCK = 0x6472617402  # PostgreSQL advisory lock key ("drat"): one tick or step at a time, on any host


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextmanager
def advisory_lock(engine: sa.Engine, key: int, wait: bool) -> Iterator[bool]:
    """A PostgreSQL session lock held on a connection of its own for the body; yields whether it
    is held. The server releases it when the connection closes, also when the process is killed."""
    with engine.connect() as conn:
        take = sa.func.pg_advisory_lock(key) if wait else sa.func.pg_try_advisory_lock(key)
        held = conn.execute(sa.select(take)).scalar() is not False
        conn.commit()  # the lock belongs to the session: the connection does not idle in a transaction
        try:
            yield held
        finally:
            if held:
                _unlock(conn, key)


def _unlock(conn: sa.Connection, key: int) -> None:
    """Release a session lock. A connection that is gone (terminated, the server restarted) released it
    with its session, and must not fail what ran under the lock: its commit stands."""
    try:
        conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
        conn.commit()
    except sa.exc.DBAPIError as exc:
        log.warning("the pipeline lock's connection was lost (%s): the server released the lock with it",
                    describe_error(exc))


# --- runs ---------------------------------------------------------------------------------

def start_run(conn: sa.Connection, hex_id: str, command: str) -> None:
    conn.execute(runs.insert().values(hex=hex_id, command=command, started_at=now(), status="running"))


def bounded(text: str | None, limit: int | None = None) -> str | None:
    """A message cut to MESSAGE_CHARS: /health, /runs and the dashboard serve it."""
    limit = limit or MESSAGE_CHARS
    return text if text is None or len(text) <= limit else text[:limit - 30] + f"... ({len(text):,} characters)"


def finish_run(conn: sa.Connection, hex_id: str, status: str, message: str = "") -> None:
    conn.execute(
        runs.update().where(runs.c.hex == hex_id)
        .values(status=status, message=bounded(message), finished_at=now())
    )


def fail_interrupted_runs(conn: sa.Connection, current_hex: str) -> int:
    """Mark runs left 'running' by a killed tick as failed (ticks never overlap: flock)."""
    result = conn.execute(
        runs.update().where(runs.c.status == "running", runs.c.hex != current_hex)
        .values(status="failed", finished_at=now(), message="interrupted before it finished; redone by a later tick")
    )
    return result.rowcount


# --- files --------------------------------------------------------------------------------

def known_files(conn: sa.Connection) -> tuple[set[str], dict[tuple[str, int, int], str]]:
    """Every content hash seen, and (file, size, mtime_ns) -> sha256 to skip re-hashing."""
    rows = conn.execute(sa.select(ingested_files.c.file, ingested_files.c.size,
                                  ingested_files.c.mtime_ns, ingested_files.c.sha256)).all()
    return {r.sha256 for r in rows}, {(r.file, r.size, r.mtime_ns): r.sha256 for r in rows}


def record_files(conn: sa.Connection, hex_id: str, records: list[dict]) -> None:
    if records:
        conn.execute(ingested_files.insert(), [{**r, "hex": hex_id} for r in records])


def ingested_rows(conn: sa.Connection) -> tuple[int, int]:
    """(rows the ingested files added, how many files): what the data sets must hold."""
    ingested = ingested_files.c.status == "ingested"
    rows, files = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(ingested_files.c.rows), 0),
                                         sa.func.count()).where(ingested)).one()
    return int(rows), int(files)


# --- models and scores ----------------------------------------------------------------------

def production_model(conn: sa.Connection):
    """The models row marked production, or None before the first deployment."""
    return conn.execute(sa.select(models).where(models.c.is_production)).first()


def batches_since(conn: sa.Connection, model_hex: str, since_hex: str | None = None) -> list:
    """The production model's scores on new data since it was last deployed (or since the run `since_hex`,
    which acknowledged a drift episode: the references moved there), oldest first, with their confusion
    counts and the drift episode each tick belonged to (rows recorded without counts are left out: they
    cannot be pooled)."""
    start = (sa.select(sa.func.max(f1.c.id)).where(f1.c.hex == since_hex) if since_hex else
             sa.select(sa.func.max(f1.c.id)).where(f1.c.model_hex == model_hex, f1.c.is_production)).scalar_subquery()
    episode = (sa.select(decisions.c.episode).where(decisions.c.hex == f1.c.hex).limit(1)
               .correlate(f1).scalar_subquery())
    query = (sa.select(f1.c.f1_score, f1.c.rows, *(f1.c[c] for c in COUNTS), episode.label("episode"))
             .where(f1.c.model_hex == model_hex, f1.c.dataset == "newdata", f1.c.id > sa.func.coalesce(start, 0),
                    f1.c.tp.is_not(None))
             .order_by(f1.c.id))
    return conn.execute(query).all()


def record_f1(conn: sa.Connection, hex_id: str, model_hex: str, score: float, dataset: str, rows: int,
              counts: dict[str, int] | None = None) -> None:
    # a dict, not keywords: values(fn=...) would clash with SQLAlchemy's own parameter name
    conn.execute(f1.insert().values({"hex": hex_id, "model_hex": model_hex, "f1_score": score, "dataset": dataset,
                                     "rows": rows, "is_production": False, **(counts or {})}))


def record_model(conn: sa.Connection, hex_id: str, path: str, sha256: str, score: float, train_rows: int,
                 counts: dict[str, int] | None = None, train_first_row: int = 0) -> None:
    """Record a trained model (not yet production) with its F1 (and counts) on the held-out rows."""
    conn.execute(models.insert().values({"hex": hex_id, "path": path, "sha256": sha256, "f1_score": score,
                                         "train_rows": train_rows, "train_first_row": train_first_row,
                                         "is_production": False, **(counts or {})}))


def get_model(conn: sa.Connection, hex_id: str):
    """The models row of one model, or None."""
    return conn.execute(sa.select(models).where(models.c.hex == hex_id)).first()


def model_to_deploy(conn: sa.Connection, hex_id: str | None = None) -> str | None:
    """hex_id if that model is recorded, else (no hex_id) the newest model not in production; None if none."""
    query = sa.select(models.c.hex).order_by(models.c.id.desc())
    return conn.execute(query.where(models.c.hex == hex_id) if hex_id else query.where(~models.c.is_production)).scalar()


def set_production(conn: sa.Connection, hex_id: str, run_hex: str, decided_by: str, reason: str | None) -> None:
    """Make a recorded model production: models and f1 flags flip and the deployment is logged, in the
    caller's transaction."""
    row = get_model(conn, hex_id)
    deployed_at = now()
    conn.execute(models.update().where(models.c.is_production).values(is_production=False))
    conn.execute(f1.update().where(f1.c.is_production).values(is_production=False))
    conn.execute(models.update().where(models.c.hex == hex_id).values(is_production=True, deployed_at=deployed_at))
    conn.execute(f1.insert().values({"hex": run_hex, "model_hex": hex_id, "f1_score": row.f1_score, "dataset": "testdata",
                                     "is_production": True, **{c: getattr(row, c) for c in COUNTS}}))
    conn.execute(deployments.insert().values(model_hex=hex_id, hex=run_hex, deployed_at=deployed_at,
                                             decided_by=decided_by, reason=reason))


@contextmanager
def recorded_run(engine: sa.Engine, command: str) -> Iterator[str]:
    """Check the schema (set it up on first use) and create a 'running' runs row; yield its random hex id.

    The body finishes the run with its status; an exception marks it failed, with the
    reason in message, and goes on so that the process exits non-zero.
    """
    ensure_schema(engine)
    hex_id = secrets.token_hex(8)
    with engine.begin() as conn:
        if command == "fullprocess.py":  # ticks never overlap (the pipeline lock): a 'running' tick is dead
            fail_interrupted_runs(conn, hex_id)
        start_run(conn, hex_id, command)
    try:
        yield hex_id
    except BaseException as exc:  # recorded for the operator, then re-raised
        with engine.begin() as conn:
            finish_run(conn, hex_id, "failed", describe_error(exc))
        raise


# --- artifacts -------------------------------------------------------------------------------

ARTIFACT_KINDS = ("model", "reference", "report", "confusion")  # pickle, gzipped CSV, PDF, JSON


def store_artifact(conn: sa.Connection, kind: str, hex_id: str, data: bytes) -> str:
    """Keep bytes in the database (replacing those of the same kind and hex); their sha256."""
    import hashlib

    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    sha = hashlib.sha256(data).hexdigest()
    conn.execute(artifacts.delete().where(artifacts.c.kind == kind, artifacts.c.hex == hex_id))
    conn.execute(artifacts.insert().values(kind=kind, hex=hex_id, sha256=sha, size=len(data), data=data, created_at=now()))
    return sha


def artifact(conn: sa.Connection, kind: str, hex_id: str | None = None):
    """(hex, sha256, data, created_at) of one artifact, the newest of its kind without hex; None if absent."""
    query = sa.select(artifacts.c.hex, artifacts.c.sha256, artifacts.c.data, artifacts.c.created_at).where(
        artifacts.c.kind == kind)
    query = query.where(artifacts.c.hex == hex_id) if hex_id else query.order_by(artifacts.c.id.desc()).limit(1)
    return conn.execute(query).first()


def artifact_hex(conn: sa.Connection, kind: str) -> str | None:
    """The hex of the newest artifact of a kind (without reading its bytes), or None."""
    query = sa.select(artifacts.c.hex).where(artifacts.c.kind == kind).order_by(artifacts.c.id.desc()).limit(1)
    return conn.execute(query).scalar()


def data_version(conn: sa.Connection) -> str:
    """Changes whenever a run starts or finishes or an artifact is stored: what the dashboard's charts show."""
    finished = sa.select(sa.func.count()).select_from(runs).where(runs.c.finished_at.is_not(None)).scalar_subquery()
    newest = sa.select(sa.func.max(runs.c.id), finished, sa.select(sa.func.max(artifacts.c.id)).scalar_subquery())
    return "-".join(str(value or 0) for value in conn.execute(newest).one())


def prune_reports(conn: sa.Connection, keep: int) -> int:
    """Delete all but the newest `keep` report PDFs (and their confusion matrices); how many went."""
    newest = sa.select(artifacts.c.id).where(artifacts.c.kind == "report").order_by(artifacts.c.id.desc()).limit(keep)
    old = conn.execute(sa.select(artifacts.c.hex).where(artifacts.c.kind == "report", artifacts.c.id.not_in(newest)))
    hexes = list(old.scalars())
    if hexes:
        conn.execute(artifacts.delete().where(artifacts.c.kind.in_(("report", "confusion")), artifacts.c.hex.in_(hexes)))
    return len(hexes)


# --- API and dashboard queries (app.py, dashboard.py): read-only ------------------------------

def production_score(conn: sa.Connection):
    """The f1 row marked production (f1_score, model_hex), or None before the first deployment."""
    return conn.execute(sa.select(f1.c.f1_score, f1.c.model_hex, f1.c.hex).where(f1.c.is_production)).first()


def run_rows(conn: sa.Connection, table: sa.Table, run_hex: str) -> list:
    """Rows one run wrote to a per-run table (feature_stats, missing_data, ...), in insertion order."""
    return conn.execute(sa.select(table).where(table.c.hex == run_hex).order_by(table.c.id)).all()


def latest_run_rows(conn: sa.Connection, table: sa.Table) -> list:
    """The rows of the most recent run that wrote to a per-run table; [] when it is empty."""
    latest = conn.execute(sa.select(table.c.hex).order_by(table.c.id.desc()).limit(1)).scalar()
    return [] if latest is None else run_rows(conn, table, latest)


def recent_runs(conn: sa.Connection, limit: int) -> list:
    """The newest runs first."""
    return conn.execute(sa.select(runs).order_by(runs.c.id.desc()).limit(limit)).all()


def f1_history(conn: sa.Connection, limit: int) -> list:
    """The newest F1 records first, with the time of the run that wrote them."""
    query = (sa.select(f1, runs.c.started_at).join(runs, runs.c.hex == f1.c.hex, isouter=True)
             .order_by(f1.c.id.desc()).limit(limit))
    return conn.execute(query).all()


def quarantined_files(conn: sa.Connection, limit: int) -> list:
    """Files whose latest record is a quarantine (a file fixed later is no longer listed), newest first."""
    latest = sa.select(sa.func.max(ingested_files.c.id)).group_by(ingested_files.c.file)
    query = (sa.select(ingested_files, runs.c.started_at).join(runs, runs.c.hex == ingested_files.c.hex, isouter=True)
             .where(ingested_files.c.id.in_(latest), ingested_files.c.status == "quarantined")
             .order_by(ingested_files.c.id.desc()).limit(limit))
    return conn.execute(query).all()


def file_counts(conn: sa.Connection) -> dict[str, int]:
    """How many file records each status has (ingested, quarantined)."""
    query = sa.select(ingested_files.c.status, sa.func.count()).group_by(ingested_files.c.status)
    return {status: count for status, count in conn.execute(query)}


# --- diagnostics and reports (diagnostics.py, reporting.py, fullprocess.py) ---------------------

WORK_STATUSES = ("no_drift", "deployed", "kept")  # ticks that ingested rows: they have diagnostics and a report
DIAGNOSTIC_TABLES = {t.name: t for t in (feature_stats, missing_data, data_drift, outdated_packages)}


def record_package_check(conn: sa.Connection, packages: list[dict] | None, error: str | None = None) -> None:
    """One answer of the outdated-packages check: the packages, or why pip could not tell (packages None)."""
    conn.execute(package_checks.insert().values(checked_at=now(), ok=packages is not None, error=error,
                                                packages=None if packages is None else json.dumps(packages)))


def latest_package_checks(conn: sa.Connection) -> tuple:
    """(the latest check, the latest check that answered): rows of package_checks, or None."""
    newest = sa.select(package_checks).order_by(package_checks.c.id.desc()).limit(1)
    return (conn.execute(newest).first(), conn.execute(newest.where(package_checks.c.ok)).first())


def record_timing(conn: sa.Connection, hex_id: str, seconds: dict[str, float]) -> None:
    """Seconds each step script (ingestion.py, training.py) took in one run."""
    if seconds:
        conn.execute(script_timing.insert(), [{"file": f, "timing": t, "hex": hex_id} for f, t in seconds.items()])


def record_diagnostics(conn: sa.Connection, hex_id: str, diagnostics: dict[str, list[dict]]) -> None:
    """Insert a tick's diagnostics rows, keyed by table name, each tagged with the tick's hex."""
    for name, rows in diagnostics.items():
        if rows:
            conn.execute(DIAGNOSTIC_TABLES[name].insert(), [{**row, "hex": hex_id} for row in rows])


def set_report_error(conn: sa.Connection, hex_id: str, error: str | None) -> None:
    """Record why a committed run's plots or PDF failed (None: they are written), leaving its status and message."""
    conn.execute(runs.update().where(runs.c.hex == hex_id).values(report_error=None if error is None else error[:2000]))


def get_run(conn: sa.Connection, hex_id: str):
    """The runs row of one run, or None."""
    return conn.execute(sa.select(runs).where(runs.c.hex == hex_id)).first()


def latest_work_run(conn: sa.Connection, training_runs: bool = False):
    """The newest tick that ingested rows (the one the latest report is about), or None;
    training_runs: or training.py run alone, which records the same statistics."""
    work = (runs.c.command == "fullprocess.py") & runs.c.status.in_(WORK_STATUSES)
    if training_runs:
        work = work | ((runs.c.command == "training.py") & (runs.c.status == "done"))
    query = sa.select(runs).where(work).order_by(runs.c.id.desc()).limit(1)
    return conn.execute(query).first()


def history(conn: sa.Connection, table: sa.Table, limit: int | None = None) -> list:
    """Rows of a per-run table with their run's started_at, oldest first (the newest `limit` if given)."""
    query = sa.select(table, runs.c.started_at).join(runs, runs.c.hex == table.c.hex).order_by(table.c.id.desc())
    return list(reversed(conn.execute(query.limit(limit)).all()))


def deployed_models(conn: sa.Connection) -> list:
    """Models that have been deployed, with their F1 on the test data, in order of (latest) deployment."""
    query = sa.select(models).where(models.c.deployed_at.is_not(None)).order_by(models.c.deployed_at)
    return conn.execute(query).all()


def model_records(conn: sa.Connection) -> tuple[list, list]:
    """Every models row with the start of the run that trained it (trained_at), newest first; and every
    deployments row, oldest first."""
    query = (sa.select(models, runs.c.started_at.label("trained_at"))
             .join(runs, runs.c.hex == models.c.hex, isouter=True).order_by(models.c.id.desc()))
    return conn.execute(query).all(), conn.execute(sa.select(deployments).order_by(deployments.c.id)).all()

