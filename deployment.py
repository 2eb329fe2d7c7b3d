"""Deploy a trained model: the newest one not in production, or --model HEX (a rollback); --list
shows them all.

    python deployment.py [--model HEX] [--reason TEXT] [--list]

The registry is riskmonitor.model.registry's, deployment by hand riskmonitor.pipeline.deploy's.
"""

import argparse
import sys

from riskmonitor.config import load_config, run_script, setup_logging
from riskmonitor.drift import decisions
from riskmonitor.model.registry import deploy_model, list_models, render_models
from riskmonitor.pipeline.deploy import alert_deployed, deploy_by_hand
from riskmonitor.store import db, storage

__all__ = ["deploy_model", "main"]


def main(argv: list[str] | None = None) -> int:
    """Deploy a trained model: the newest one not in production, or --model HEX (a rollback); --list shows them all."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--model", help="hex id of the model to deploy (default: the newest trained)")
    parser.add_argument("--reason", help="why, recorded with the deployment (default: 'deployed by hand')")
    parser.add_argument("--list", action="store_true", help="list every recorded model and when it was in production")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    if args.list:
        db.ensure_schema(engine)
        with engine.connect() as conn:
            print(render_models(list_models(conn)))
        return 0
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "deployment.py") as run_hex:
        with engine.begin() as conn:
            decision = deploy_by_hand(conn, config, run_hex, args.model, args.reason or "deployed by hand")
            db.finish_run(conn, run_hex, "deployed", decisions.summary("", decision))
    alert_deployed(config, engine, decision)
    print(f"model {decision.challenger_hex} is now in production at {config.production_model}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))

