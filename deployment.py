"""Deploy a trained model: the production file is replaced atomically and the database
flags flip in the caller's transaction, so production is always one complete model."""

import argparse
import logging
import sys

import sqlalchemy as sa

import db
import storage
from config import Config, run_script

log = logging.getLogger(__name__)


def _copy_verified(config: Config, row) -> None:
    """Copy a recorded model to the production file, checking its sha256 first."""
    try:
        data = (config.project_dir / row.path).read_bytes()
    except FileNotFoundError as exc:
        raise storage.ModelIntegrityError(f"{row.path}, the archived copy of model {row.hex}, is missing") from exc
    if storage.sha256_bytes(data) != row.sha256:
        raise storage.ModelIntegrityError(f"{row.path} does not match the sha256 recorded for model {row.hex}")
    storage.replace_atomically(config.production_model, lambda handle: handle.write(data))


def deploy_model(conn: sa.Connection, config: Config, model_hex: str, run_hex: str) -> None:
    """Make a recorded model production: file first, then the flags (committed by the caller).

    If the transaction never commits, restore_production_file puts the old model back.
    """
    row = conn.execute(sa.select(db.models).where(db.models.c.hex == model_hex)).one()
    _copy_verified(config, row)
    db.set_production(conn, model_hex, run_hex)
    log.info("deployed model %s (F1 %.4f)", model_hex, row.f1_score)


def restore_production_file(conn: sa.Connection, config: Config) -> bool:
    """Make the production file match the production row again (after a crash); True if it had to."""
    row = db.production_model(conn)
    if row is None or (config.production_model.exists()
                       and storage.sha256_file(config.production_model) == row.sha256):
        return False
    log.warning("production model file does not match model %s: restoring it from %s", row.hex, row.path)
    _copy_verified(config, row)
    return True


def main(argv: list[str] | None = None) -> int:
    """Deploy a trained model: the newest one not in production, or --model HEX."""
    from config import load_config, setup_logging

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", help="hex id of the model to deploy (default: the newest trained)")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "deployment.py") as run_hex:
        with engine.begin() as conn:
            query = sa.select(db.models.c.hex).order_by(db.models.c.id.desc())
            query = query.where(db.models.c.hex == args.model) if args.model else query.where(~db.models.c.is_production)
            model_hex = conn.execute(query).scalar()
            if model_hex is None:
                raise LookupError(f"no model {args.model}" if args.model else "no trained model to deploy: run training.py first")
            deploy_model(conn, config, model_hex, run_hex)
            db.finish_run(conn, run_hex, "deployed", f"model {model_hex} deployed by deployment.py")
    print(f"model {model_hex} is now in production at {config.production_model}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
