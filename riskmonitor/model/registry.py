"""The registry of trained models: deploying one (the production file is replaced atomically and the
database flags flip in the caller's transaction, so production is always one complete model), and
every model with the periods it was in production."""

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.store import db, storage

log = logging.getLogger(__name__)


def _copy_verified(conn: sa.Connection, config: Config, row) -> None:
    """Copy a recorded model to the production file, checking its sha256 first; its bytes come from
    the archived copy in models/, or from the database where this host has no such file."""
    try:
        data = (config.project_dir / row.path).read_bytes()
    except FileNotFoundError as exc:
        stored = db.artifact(conn, "model", row.hex)
        if stored is None:
            raise storage.ModelIntegrityError(f"{row.path}, the archived copy of model {row.hex}, is missing") from exc
        data = stored.data
    if storage.sha256_bytes(data) != row.sha256:
        raise storage.ModelIntegrityError(f"{row.path} does not match the sha256 recorded for model {row.hex}")
    storage.replace_atomically(config.production_model, lambda handle: handle.write(data))


def deploy_model(conn: sa.Connection, config: Config, model_hex: str, run_hex: str,
                 decided_by: str, reason: str | None = None) -> None:
    """Make a recorded model production: file first, then the flags and the deployments row
    (committed by the caller). If the transaction never commits, restore_production_file puts
    the old model back."""
    row = db.get_model(conn, model_hex)
    if row is None:
        raise LookupError(f"no model {model_hex}")
    _copy_verified(conn, config, row)
    db.set_production(conn, model_hex, run_hex, decided_by, reason)
    log.info("deployed model %s (F1 %.4f) by %s: %s", model_hex, row.f1_score, decided_by, reason or "no reason given")


@dataclass(frozen=True)
class Period:
    """One stretch of time a model was in production."""

    deployed_at: dt.datetime
    until: dt.datetime | None  # None: still in production
    decided_by: str  # fullprocess.py | deployment.py
    reason: str | None
    run: str  # hex of the run that deployed it


@dataclass(frozen=True)
class ModelRecord:
    """A recorded model as --list, GET /models and the dashboard show it."""

    hex: str
    trained_at: dt.datetime | None  # start of the run that trained it
    train_rows: int | None
    f1_score: float  # on the held-out test data
    trained_on: str
    in_production: bool
    periods: tuple[Period, ...]


def list_models(conn: sa.Connection) -> list[ModelRecord]:
    """Every recorded model, newest first, with each period it was in production."""
    rows, log_rows = db.model_records(conn)
    ends = [later.deployed_at for later in log_rows[1:]] + [None] * bool(log_rows)  # a deployment ends the one before
    periods: dict[str, list[Period]] = {}
    for entry, until in zip(log_rows, ends, strict=True):
        periods.setdefault(entry.model_hex, []).append(
            Period(entry.deployed_at, until, entry.decided_by, entry.reason, entry.hex))
    return [ModelRecord(row.hex, row.trained_at, row.train_rows, row.f1_score, _trained_on(row), row.is_production,
                        tuple(periods.get(row.hex, ()))) for row in rows]


def _trained_on(row) -> str:
    """What the model was trained on: the rows of finaldata.csv from train_first_row on, as it stood then."""
    if row.train_rows is None:
        return "all data ingested until then"
    if not row.train_first_row:
        return f"all data ingested until then ({row.train_rows:,} rows)"
    first = row.train_first_row + 1  # as a person counts the data rows of finaldata.csv
    return f"the latest {row.train_rows:,} rows (rows {first:,} to {first + row.train_rows - 1:,} of finaldata.csv)"


def render_models(records: list[ModelRecord]) -> str:
    """The text of --list: one line per model, one indented line per period in production."""
    if not records:
        return "no model recorded yet: run fullprocess.py or training.py"
    when = "{:%Y-%m-%d %H:%M:%S}".format
    lines = [f"{'':2}{'model':<18}{'trained (UTC)':<21}{'rows':>9}{'F1':>8}  trained on"]
    for record in records:
        trained = when(record.trained_at) if record.trained_at else "-"
        rows = f"{record.train_rows:,}" if record.train_rows is not None else "-"
        lines.append(f"{'*' if record.in_production else '':2}{record.hex:<18}{trained:<21}{rows:>9}"
                     f"{record.f1_score:>8.4f}  {record.trained_on}")
        for period in record.periods:
            until = when(period.until) if period.until else "now"
            lines.append(f"{'':6}in production {when(period.deployed_at)} to {until}, deployed by "
                         f"{period.decided_by} (run {period.run}): {period.reason or 'no reason given'}")
    production = next((r.hex for r in records if r.in_production), None)
    lines.append(f"* in production now: {production}" if production else "no model is in production")
    return "\n".join(lines)


def restore_production_file(conn: sa.Connection, config: Config) -> bool:
    """Make the production file match the production row again (after a crash); True if it had to."""
    row = db.production_model(conn)
    if row is None or (config.production_model.exists()
                       and storage.sha256_file(config.production_model) == row.sha256):
        return False
    log.warning("production model file does not match model %s: restoring it from %s", row.hex, row.path)
    _copy_verified(conn, config, row)
    return True
