"""The database's schema: every table in one MetaData, the engine, and the schema's revision.

Alembic owns the schema (alembic.ini, migrations/): each change is a revision there, and every
entry point (the tick, the step scripts, the API) calls ensure_schema, which sets up an empty
database and refuses one whose revision is not the code's. The queries live in db.py.

SQLAlchemy Core, not the ORM: importing sqlalchemy.orm costs about as much again as
sqlalchemy itself, and a tick with no new data must stay fast.
"""

import datetime as dt

import sqlalchemy as sa

from riskmonitor.config import PROJECT_DIR

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator):
    """DateTime(timezone=True) that gives back aware UTC datetimes on every database: SQLite
    stores no zone (its values are naive UTC) and PostgreSQL answers in the session's zone."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"a naive datetime cannot be stored as UTC: {value}")
        return None if value is None else value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


runs = sa.Table(
    "runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hex", sa.String(32), nullable=False, unique=True),
    sa.Column("command", sa.String(40), nullable=False),  # fullprocess.py, or a step run alone
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("message", sa.Text),  # one line for a person, rendered from the tick's decision record
    sa.Column("report_error", sa.Text),  # the plots or the PDF failed after the run committed; NULL when fine
)

ingested_files = sa.Table(
    "ingested_files", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("file", sa.Text, nullable=False),  # name inside the input folder
    sa.Column("sha256", sa.String(64), nullable=False, index=True),
    sa.Column("size", sa.BigInteger),  # size and mtime let a tick skip re-hashing known files
    sa.Column("mtime_ns", sa.BigInteger),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # ingested | quarantined
    sa.Column("error", sa.Text),
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

COUNTS = ("tp", "fp", "fn", "tn")  # the confusion counts kept beside an F1 score (f1 and models)

f1 = sa.Table(
    "f1", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("f1_score", sa.Float, nullable=False),
    sa.Column("hex", sa.String(32), nullable=False, index=True),
    sa.Column("model_hex", sa.String(32), nullable=False),  # the model that was scored
    sa.Column("dataset", sa.String(40), nullable=False),  # testdata | newdata | gate (recent held-out rows)
    sa.Column("rows", sa.Integer),
    sa.Column("is_production", sa.Boolean, nullable=False, default=False),
    # Confusion counts behind f1_score (NULL in rows written before they were kept): pooled over
    # batches they give the exact F1 of all the rows and its standard error (scoring.Confusion).
    *(sa.Column(count, sa.Integer) for count in COUNTS),
)

feature_stats = sa.Table(
    "feature_stats", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feature", sa.String(100), nullable=False),
    sa.Column("mean", sa.Float),
    sa.Column("median", sa.Float),
    sa.Column("std", sa.Float),
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

missing_data = sa.Table(
    "missing_data", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feature", sa.String(100), nullable=False),
    sa.Column("percentage", sa.Float, nullable=False),  # a fraction, 0 to 1
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

script_timing = sa.Table(
    "script_timing", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("file", sa.String(40), nullable=False),  # ingestion.py | training.py
    sa.Column("timing", sa.Float, nullable=False),  # seconds
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

models = sa.Table(
    "models", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hex", sa.String(32), nullable=False, unique=True),  # the run that trained it
    sa.Column("path", sa.Text, nullable=False),  # archived copy, relative to the project
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("f1_score", sa.Float, nullable=False),  # on testdata when it was deployed
    sa.Column("train_rows", sa.Integer),
    # What it learned: rows train_first_row .. train_first_row + train_rows - 1 of finaldata.csv (0-based,
    # in arrival order): 0 for all of history, later for the recent window a drift retrain uses.
    sa.Column("train_first_row", sa.Integer),
    sa.Column("deployed_at", UTCDateTime),
    sa.Column("is_production", sa.Boolean, nullable=False, default=False),
    # Confusion counts behind f1_score on the held-out rows: the model's drift reference, with its
    # standard error (NULL in rows written before they were kept).
    *(sa.Column(count, sa.Integer) for count in COUNTS),
)

deployments = sa.Table(
    "deployments", metadata,  # one row each time a model went into production: a rollback adds another
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_hex", sa.String(32), nullable=False, index=True),
    sa.Column("hex", sa.String(32), nullable=False, index=True),  # the run that deployed it
    sa.Column("deployed_at", UTCDateTime, nullable=False),
    sa.Column("decided_by", sa.String(40), nullable=False),  # fullprocess.py | deployment.py
    sa.Column("reason", sa.Text),
)

artifacts = sa.Table(
    "artifacts", metadata,  # what the API needs besides rows: it reads only the database (any host, any replica)
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),  # model | reference | report | confusion (ARTIFACT_KINDS)
    sa.Column("hex", sa.String(32), nullable=False),  # the model's hex (model, reference) or the run's (report, confusion)
    sa.Column("sha256", sa.String(64), nullable=False),  # checked before a model's bytes are parsed
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("kind", "hex", name="uq_artifacts_kind_hex"),
)

data_drift = sa.Table(
    "data_drift", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("feature", sa.String(100), nullable=False),
    sa.Column("statistic", sa.Float),  # two-sample Kolmogorov-Smirnov D
    sa.Column("p_value", sa.Float),
    sa.Column("psi", sa.Float),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

# One row per decision: each tick that scored new data or trained a model, each deployment by hand.
# Numbers a test does not compute stay NULL (decisions.Decision describes each column).
decisions = sa.Table(
    "decisions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hex", sa.String(32), nullable=False, index=True),  # the run that decided
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_by", sa.String(40), nullable=False),  # fullprocess.py | deployment.py
    sa.Column("reason", sa.Text),  # --reason of a command run by hand
    sa.Column("drift_test", sa.String(40)),
    sa.Column("new_f1", sa.Float),
    sa.Column("new_rows", sa.Integer),
    sa.Column("reference_f1", sa.Float),
    sa.Column("reference_rows", sa.Integer),
    sa.Column("drift_std_error", sa.Float),
    sa.Column("drift_interval_low", sa.Float),
    sa.Column("drift_interval_high", sa.Float),
    sa.Column("drift_threshold", sa.Float),
    sa.Column("model_drifted", sa.Boolean),
    sa.Column("data_drifted", sa.Boolean),
    sa.Column("drifted_features", sa.Text),  # JSON list of feature names
    sa.Column("retrain_reason", sa.Text),
    sa.Column("champion_hex", sa.String(32)),
    sa.Column("challenger_hex", sa.String(32)),
    sa.Column("champion_f1", sa.Float),
    sa.Column("challenger_f1", sa.Float),
    sa.Column("eval_rows", sa.Integer),
    sa.Column("f1_difference", sa.Float),  # challenger - champion
    sa.Column("difference_low", sa.Float),
    sa.Column("difference_high", sa.Float),
    sa.Column("gate_rule", sa.String(40)),
    sa.Column("gate_margin", sa.Float),
    sa.Column("deployed", sa.Boolean, nullable=False),
    sa.Column("deploy_reason", sa.Text),
    sa.Column("verdict", sa.String(20)),  # no_drift | deployed | kept | acknowledged | degrading (NULL before 0011)
    sa.Column("episode", sa.Integer),  # the drift episode the tick belongs to (episodes.id); NULL outside one
    sa.Column("episode_outcome", sa.String(20)),  # open | deployed | acknowledged | returned
)

# A drift episode: opened by a drift verdict, its rows are every batch since the drift began (the
# challenger's window and the gate's evidence, growing across ticks), ended by a deployment, by an
# acknowledgement (kept with enough evidence: the references move to its rows) or by the data returning.
episodes = sa.Table(
    "episodes", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("model_hex", sa.String(32), nullable=False),  # the production model it is about
    sa.Column("opened_hex", sa.String(32), nullable=False),  # the run that found the drift
    sa.Column("start_rows", sa.BigInteger, nullable=False),  # data-set rows before its first batch
    sa.Column("status", sa.String(20), nullable=False),  # open | deployed | acknowledged | returned
    sa.Column("closed_hex", sa.String(32)),
    sa.Column("challenger_rows", sa.BigInteger),  # its rows when the last challenger was trained
    sa.Column("alerted", sa.Text),  # JSON list of the alert events sent for it (one per outcome)
    # Acknowledged: the production model's counts on the episode's held-out rows, its new F1 reference.
    *(sa.Column(f"reference_{count}", sa.Integer) for count in COUNTS),
)

# Every POST of an alert (alerts.py): the webhook's host only, never its URL, which may carry a secret.
alert_attempts = sa.Table(
    "alert_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hex", sa.String(32), index=True),  # the run the alert is about
    sa.Column("event", sa.String(60), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("error", sa.Text),
    sa.Column("sent_at", UTCDateTime, nullable=False),
    sa.Column("duration", sa.Float, nullable=False),  # seconds
)

outdated_packages = sa.Table(
    "outdated_packages", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("package", sa.String(100), nullable=False),
    sa.Column("installed", sa.String(60)),
    sa.Column("latest", sa.String(60)),
    sa.Column("hex", sa.String(32), nullable=False, index=True),
)

package_checks = sa.Table(  # the outdated-packages check, at most once a day, out of the tick's way
    "package_checks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("checked_at", UTCDateTime, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),  # False: pip could not tell (no network, timeout)
    sa.Column("packages", sa.Text),  # JSON list of {package, installed, latest} when ok
    sa.Column("error", sa.Text),
)


# --- the data sets: every ingested labelled row, in the order it was stored ------------------
# A row's values are its line of the exports (finaldata.csv, testdata.csv): the data-set columns
# of config.json as CSV, so that any columns a project configures fit one schema. Its key is the
# pair of 64-bit row hashes (as signed integers), unique: a row is stored once, whoever stores it.
dataset_rows = sa.Table(
    "dataset_rows", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),  # the order
    sa.Column("k1", sa.BigInteger, nullable=False),
    sa.Column("k2", sa.BigInteger, nullable=False),
    sa.Column("held_out", sa.Boolean, nullable=False),  # testdata (True) or finaldata (False), by the row's hash
    sa.Column("hex", sa.String(32), nullable=False),  # the run that stored it
    sa.Column("line", sa.Text, nullable=False),
    sa.UniqueConstraint("k1", "k2", name="uq_dataset_rows_key"),
)  # no index on the side: a side is read by id ranges, the primary key (each index costs every insert)

# Running statistics of the training rows (finaldata), one row per data-set column, brought up to date
# in the transaction that stores rows: a tick that does not train reads none of the history.
dataset_stats = sa.Table(
    "dataset_stats", metadata,
    sa.Column("name", sa.String(255), primary_key=True),  # the column
    sa.Column("n", sa.BigInteger, nullable=False),  # values present (features)
    sa.Column("mean", sa.Float, nullable=False),
    sa.Column("m2", sa.Float, nullable=False),  # sum of squared deviations from the mean
    sa.Column("missing", sa.BigInteger, nullable=False),
)

# One row (id 1): what the data sets hold, and the tick's serialization point. A commit that stores
# rows, records files or deploys moves `version` on from the one its tick read; a tick that finds
# it moved lost the race and stores nothing (safe without the pipeline lock).
dataset_state = sa.Table(
    "dataset_state", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("header", sa.Text),  # the columns every line follows; NULL before the first row
    sa.Column("train_rows", sa.BigInteger, nullable=False),
    sa.Column("test_rows", sa.BigInteger, nullable=False),
    sa.Column("imported_rows", sa.BigInteger),  # rows a file-based release's data sets held (dbsetup.py --import-datasets)
    sa.Column("imported_at", UTCDateTime),
)

# --- uploads: batches sent to POST /batches, waiting in the database for a tick ------------------
# The record stays; the bytes (upload_chunks) are deleted by the commit that stores the file's rows.
uploads = sa.Table(
    "uploads", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),  # as sent (?name=): 1-255 printable characters ending .csv
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),  # bytes seen once, whoever sends them again
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("who", sa.Text),  # the client's address (and the proxies' it came through)
    sa.Column("hex", sa.String(32), index=True),  # the run that ingested or quarantined it; NULL: waiting
    sa.Column("rows", sa.Integer),  # rows it added (ingested_files.rows), once ingested
)

UPLOAD_CHUNK_BYTES = 4 * 1024 * 1024  # an upload is stored in pieces: no value near PostgreSQL's 1 GB limit
upload_chunks = sa.Table(
    "upload_chunks", metadata,
    sa.Column("upload_id", sa.Integer, sa.ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

SQLITE_CACHE_KIB = 131_072  # SQLite's page cache (grown only as pages are read): a million random keys go into
# dataset_rows' unique index twice as fast as with the default 2 MiB


def make_engine(url: str) -> sa.Engine:
    """One engine per process; SQLite waits for a busy writer instead of failing."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _cache(dbapi_connection, record):
            dbapi_connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


# --- the schema's revision (Alembic owns the schema: migrations/) -----------------------------

SCHEMA_REVISION = "0011"  # the newest revision in migrations/versions (tests/test_migrations.py checks it)
MIGRATION_LOCK = 0x6472617401  # PostgreSQL advisory lock key ("drat"): one migration at a time
alembic_version = sa.Table("alembic_version", sa.MetaData(), sa.Column("version_num", sa.String(32)))


class SchemaOutOfDate(RuntimeError):
    """The database's revision is not the code's: python dbsetup.py upgrades it."""


def schema_revision(conn: sa.Connection) -> str | None:
    """The database's Alembic revision; None when it has none (empty, or made by the first release)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.select(alembic_version.c.version_num)).scalar()


def ensure_schema(engine: sa.Engine, create: bool = True) -> None:
    """Set up an empty database on first use (unless `create` is False: the web process on PostgreSQL, which
    never runs DDL); refuse one whose revision is not the code's.

    Every entry point calls this: the tick, the step scripts and the API.
    """
    with engine.connect() as conn:
        current = schema_revision(conn)
        empty = current is None and not set(metadata.tables) & set(sa.inspect(conn).get_table_names())
    if current == SCHEMA_REVISION:
        return
    if empty and create:
        upgrade(engine.url.render_as_string(hide_password=False))
        return
    if empty:
        raise SchemaOutOfDate("the database has no tables yet: run python dbsetup.py (the web process never changes "
                              "the schema of a PostgreSQL database)")
    refuse_newer(current)
    found = f"at revision {current}" if current else "from the first release (no revision)"
    raise SchemaOutOfDate(f"the database is {found}, the code needs revision {SCHEMA_REVISION}: "
                          "run python dbsetup.py to upgrade it")


def refuse_newer(revision: str | None) -> None:
    """A revision this code has no migration for was written by a newer release: nothing here may touch it."""
    if revision is not None and not any((PROJECT_DIR / "migrations" / "versions").glob(f"{revision}_*.py")):
        raise SchemaOutOfDate(f"the database is at revision {revision}, newer than this code ({SCHEMA_REVISION}): "
                              "install the newer release")


def migration_engine(url: str) -> sa.Engine:
    """An engine whose transactions include DDL: pysqlite's own transaction handling is off, and
    SQLite transactions begin EXCLUSIVE, so that two processes never migrate one file at once."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        @sa.event.listens_for(engine, "connect")
        def _driver_autocommit(dbapi_connection, record):
            dbapi_connection.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_exclusive(conn):
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
    return engine


def lock_migrations(conn: sa.Connection) -> None:
    """On PostgreSQL, wait for any other process migrating this database (released at commit)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))


def alembic_config(connection: sa.Connection | None = None):
    """Alembic's configuration for this project's migrations/, whatever the working directory."""
    from alembic.config import Config

    here = PROJECT_DIR  # alembic.ini and migrations/ sit beside the commands
    config = Config(str(here / "alembic.ini"))
    config.set_main_option("script_location", str(here / "migrations"))
    config.attributes["connection"] = connection
    return config


def upgrade(url: str, adopt_first_release: bool = False) -> tuple[str | None, str | None]:
    """Upgrade the database to the newest revision in one locked transaction; (from, to) revisions.

    adopt_first_release: a database the first release made (its tables, no revision) is marked
    as revision 0001, its schema, and then upgraded.
    """
    from alembic import command

    engine = migration_engine(url)
    try:
        with engine.begin() as conn:
            lock_migrations(conn)
            before = schema_revision(conn)
            refuse_newer(before)
            config = alembic_config(conn)
            if before is None and set(metadata.tables) & set(sa.inspect(conn).get_table_names()):
                if not adopt_first_release:
                    raise SchemaOutOfDate("the database has tables but no revision: run python dbsetup.py")
                command.stamp(config, "0001")
                before = "0001 (the first release's schema, no revision recorded)"
            command.upgrade(config, "head")
            after = schema_revision(conn)
    finally:
        engine.dispose()
    return before, after


def drop_tables(engine: sa.Engine) -> None:
    """Drop every table of the system and the record of its revision."""
    metadata.drop_all(engine, checkfirst=True)
    alembic_version.drop(engine, checkfirst=True)
