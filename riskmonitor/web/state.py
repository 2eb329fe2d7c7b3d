"""The app's state: its config, engine, model cache and token (state()), the schema check that readies
the database, what a database error means to a client, and a tick that is stuck."""

import datetime as dt
import logging

import sqlalchemy as sa
from flask import Flask, current_app

from riskmonitor.store import db

log = logging.getLogger(__name__)


def state(key: str):
    """The current app's config, engine or model cache."""
    return current_app.extensions["drat"][key]


def ensure_schema(app: Flask, at_startup: bool = False) -> None:
    """Set up an empty database, or check the revision of an existing one, until it is found right.

    A database that is behind raises db.SchemaOutOfDate (503 until `python dbsetup.py` upgrades it). On
    PostgreSQL the web process never runs DDL, so an empty database is refused the same way; only the embedded
    SQLite file of a fresh clone is set up here, so that a newcomer can open the dashboard before any tick.
    """
    ext = app.extensions["drat"]
    if ext["schema_ready"]:
        return
    try:
        db.ensure_schema(ext["engine"], create=ext["engine"].dialect.name == "sqlite")
    except sa.exc.DBAPIError as exc:
        if not at_startup or not database_trouble(exc):
            raise  # answered 503 by the handler below
        # The database may come back (or be restored) later: start anyway, /health says what is wrong.
        log.error("database unreachable or unusable at startup: %s", exc)
        return
    except db.SchemaOutOfDate as exc:
        if not at_startup:
            raise
        log.error("%s", exc)
        return
    ext["schema_ready"] = True
    ext["engine"].dispose()  # pooled connections must not be shared by processes forked after startup


def database_trouble(exc: sa.exc.DBAPIError) -> str | None:
    """What to tell a client about a database that cannot be used, or None for an error that is a bug."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):  # down, unreachable, locked, unopenable
        return "the database is unavailable: it cannot be reached or opened; try again shortly"
    if type(exc) is sa.exc.DatabaseError:  # SQLite: "file is not a database", "database disk image is malformed"
        return "the database is unavailable: its file is damaged or is not a database; restore it from a backup"
    return None


def stalled_run(run, limit_seconds: int) -> str | None:
    """Why a run still `running` after the tick time limit is stuck, or None."""
    if run is None or run.status != "running" or limit_seconds <= 0:
        return None
    started = run.started_at if run.started_at.tzinfo else run.started_at.replace(tzinfo=dt.UTC)
    seconds = (db.now() - started).total_seconds()
    if seconds <= limit_seconds:
        return None
    return (f"run {run.hex} has been running for {seconds:.0f} s, longer than tick_timeout_seconds "
            f"({limit_seconds} s): it is stuck or was killed")

