"""Deployment by hand (deployment.py): a model chosen by a person is deployed and its decision recorded, in
the caller's transaction, then announced."""

import sqlalchemy as sa

from riskmonitor import alerts
from riskmonitor.config import Config
from riskmonitor.drift import decisions
from riskmonitor.model.registry import deploy_model
from riskmonitor.store import db


def deploy_by_hand(conn: sa.Connection, config: Config, run_hex: str, model_hex: str | None, reason: str | None):
    """Deploy a model (the newest not in production when model_hex is None) and record the decision."""
    chosen = db.model_to_deploy(conn, model_hex)
    if chosen is None:
        raise LookupError(f"no model {model_hex}" if model_hex else "no trained model to deploy: run training.py first")
    model = db.get_model(conn, chosen)
    decision = decisions.hand_decision(run_hex, model, db.production_model(conn), "deployment.py", reason)
    deploy_model(conn, config, model.hex, run_hex, "deployment.py", reason)
    decisions.record(conn, decision)
    return decision


def alert_deployed(config: Config, engine: sa.Engine, decision) -> None:
    """Tell a person that a model was deployed by hand (alerts: bounded, never raises for the webhook's sake)."""
    alerts.send(config, engine, decision.hex, "deployed", f"Churn risk monitor: {decision.deploy_reason}: model "
                f"{decision.challenger_hex} (F1 {decision.challenger_f1:.4f}) is in production", decision)

