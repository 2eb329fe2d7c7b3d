"""Decisions as values: the verdicts a tick reaches, the record written for each decision (the
`decisions` table), and the one line for a person rendered from them. Nothing parses text back.

The drift test (scoring.detect_model_drift) returns a ModelDrift, the deployment gate
(fullprocess) a Gate; a Decision is the flat record of one tick or one deployment by hand.
"""

import datetime as dt
import json
import math
from dataclasses import dataclass, fields

import sqlalchemy as sa

from riskmonitor.store import db


@dataclass(frozen=True)
class ModelDrift:
    """The production model's F1 on the new rows against its reference, and the verdict."""

    test: str  # the test applied: config.drift_test, or pooled where a test fell back to it
    new_f1: float
    new_rows: int
    reference_f1: float | None  # the production model's F1 when it was deployed
    reference_rows: int | None
    threshold: float  # drift when new_f1 is below it
    drifted: bool
    rule: str  # how the threshold was found, for a person
    std_error: float | None = None  # sampling error of the comparison, when the test knows it
    interval_low: float | None = None
    interval_high: float | None = None


@dataclass(frozen=True)
class DataDrift:
    """Data drift of the new rows against the production model's training data (PSI per feature)."""

    drifted: bool
    features: tuple[str, ...]  # the features that drifted
    threshold: float  # PSI at or above this is drift


@dataclass(frozen=True)
class Challenger:
    """A model the tick trained, saved and not yet recorded."""

    hex: str
    path: str  # relative to the project
    sha256: str
    train_rows: int
    retrain_reason: str  # why the tick trained it
    first_row: int = 0  # of finaldata.csv: it learned the rows from here on (a recent window after drift)


@dataclass(frozen=True)
class Gate:
    """Challenger against champion on the held-out rows, and whether the challenger is deployed."""

    challenger_f1: float
    champion_f1: float | None  # None: no model in production
    rows: int
    rule: str  # the rule applied, e.g. "at least as good", "non-inferiority", "superiority"
    deploy: bool
    reason: str  # why it is deployed or not, for a person
    margin: float | None = None
    difference: float | None = None  # challenger - champion
    interval_low: float | None = None
    interval_high: float | None = None
    challenger_counts: object = None  # scoring.Confusion on the rows judged: its drift reference once deployed
    champion_counts: object = None


@dataclass(frozen=True)
class Decision:
    """One row of the decisions table: the columns of db.decisions but id."""

    hex: str
    created_at: dt.datetime
    decided_by: str
    deployed: bool
    deploy_reason: str | None = None
    reason: str | None = None
    drift_test: str | None = None
    new_f1: float | None = None
    new_rows: int | None = None
    reference_f1: float | None = None
    reference_rows: int | None = None
    drift_std_error: float | None = None
    drift_interval_low: float | None = None
    drift_interval_high: float | None = None
    drift_threshold: float | None = None
    model_drifted: bool | None = None
    data_drifted: bool | None = None
    drifted_features: tuple[str, ...] | None = None
    retrain_reason: str | None = None
    champion_hex: str | None = None
    challenger_hex: str | None = None
    champion_f1: float | None = None
    challenger_f1: float | None = None
    eval_rows: int | None = None
    f1_difference: float | None = None
    difference_low: float | None = None
    difference_high: float | None = None
    gate_rule: str | None = None
    gate_margin: float | None = None
    verdict: str | None = None  # no_drift | deployed | kept | acknowledged | degrading
    episode: int | None = None  # the drift episode (episodes.id), None outside one
    episode_outcome: str | None = None  # open | deployed | acknowledged | returned

    @property
    def drift_found(self) -> bool:
        """Model or data drift: what a person is told about."""
        return bool(self.model_drifted or self.data_drifted)

    def as_row(self) -> dict:
        """The values for db.decisions.insert()."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["drifted_features"] = None if self.drifted_features is None else json.dumps(list(self.drifted_features))
        return row

    @classmethod
    def from_row(cls, row) -> "Decision":
        """A decisions row read back."""
        values = {f.name: row._mapping[f.name] for f in fields(cls)}
        text = values["drifted_features"]
        values["drifted_features"] = None if text is None else tuple(json.loads(text))
        return cls(**values)

    def as_json(self) -> dict:
        """The record as the API and the alerts show it: ISO time, lists, no NaN."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif isinstance(value, dt.datetime):
                value = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def tick_decision(run_hex: str, drift: ModelDrift | None, data: DataDrift | None, challenger: Challenger | None,
                  gate: Gate | None, champion_hex: str | None, episode=None) -> Decision:
    """The record of a tick that scored new data or trained a model (`episode`: its episodes.Step; the
    episode's id is set by the commit that writes it)."""
    deployed = bool(gate and gate.deploy)
    verdict = episode.verdict if episode else "deployed" if deployed else "kept" if gate else "no_drift"
    if gate:
        reason = gate.reason
    elif episode and episode.outcome == "open":
        reason = ("drift episode open: production stays until its rows hold enough held-out rows for the gate "
                  "to judge a challenger, or half as many again as the last one's")
    else:
        reason = "no drift: the production model stays, nothing was trained"
    values = dict(hex=run_hex, created_at=db.now(), decided_by="fullprocess.py", deployed=deployed,
                  deploy_reason=reason, verdict=verdict, episode=episode.episode.id if episode else None,
                  episode_outcome=episode.outcome if episode else None)
    if drift:
        values.update(drift_test=drift.test, new_f1=drift.new_f1, new_rows=drift.new_rows,
                      reference_f1=drift.reference_f1, reference_rows=drift.reference_rows,
                      drift_std_error=drift.std_error, drift_interval_low=drift.interval_low,
                      drift_interval_high=drift.interval_high, drift_threshold=drift.threshold,
                      model_drifted=drift.drifted)
    if data:
        values.update(data_drifted=data.drifted, drifted_features=data.features)
    if challenger and gate:
        values.update(retrain_reason=challenger.retrain_reason, champion_hex=champion_hex,
                      challenger_hex=challenger.hex, champion_f1=gate.champion_f1, challenger_f1=gate.challenger_f1,
                      eval_rows=gate.rows, f1_difference=gate.difference, difference_low=gate.interval_low,
                      difference_high=gate.interval_high, gate_rule=gate.rule, gate_margin=gate.margin)
    return Decision(**values)


def hand_decision(run_hex: str, model, production, decided_by: str, reason: str | None) -> Decision:
    """The record of a deployment by hand: models rows of the deployed model and of the one it replaces."""
    return Decision(
        hex=run_hex, created_at=db.now(), decided_by=decided_by, reason=reason, deployed=True, verdict="deployed",
        deploy_reason=f"deployed by hand with {decided_by}" + (f": {reason}" if reason else ""),
        challenger_hex=model.hex, challenger_f1=model.f1_score, gate_rule="by hand",
        champion_hex=production.hex if production else None, champion_f1=production.f1_score if production else None,
    )


def record(conn: sa.Connection, decision: Decision) -> None:
    """Insert a decision in the caller's transaction."""
    conn.execute(db.decisions.insert().values(**decision.as_row()))


def recent(conn: sa.Connection, limit: int) -> list[Decision]:
    """The newest decisions first."""
    query = sa.select(db.decisions).order_by(db.decisions.c.id.desc()).limit(limit)
    return [Decision.from_row(r) for r in conn.execute(query)]


def of_runs(conn: sa.Connection, run_hexes: list[str]) -> dict[str, Decision]:
    """The decision of each of these runs that made one (a run makes at most one)."""
    query = sa.select(db.decisions).where(db.decisions.c.hex.in_(run_hexes)).order_by(db.decisions.c.id)
    return {r.hex: Decision.from_row(r) for r in conn.execute(query)} if run_hexes else {}


# --- the text for a person, rendered from the values ------------------------------------------

def _f(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def drift_text(d: Decision) -> str:
    """The model-drift verdict in one sentence; '' when the tick did not score new data."""
    if d.model_drifted is None:
        return ""
    verdict = "drift" if d.model_drifted else "no drift"
    error = f" (standard error {_f(d.drift_std_error)})" if d.drift_std_error is not None else ""
    return (f"{verdict}: F1 {_f(d.new_f1)} on {_f(d.new_rows, ',')} new rows vs threshold {_f(d.drift_threshold)}"
            f"{error} ({d.drift_test} test; reference F1 {_f(d.reference_f1)})")


def data_drift_text(d: Decision) -> str:
    """The data-drift verdict; '' when it was not measured."""
    if d.data_drifted is None:
        return ""
    return f"data drift in {', '.join(d.drifted_features)}" if d.data_drifted else "no data drift"


def gate_text(d: Decision) -> str:
    """Challenger against champion and the outcome; '' when nothing was trained."""
    if d.challenger_hex is None:
        return ""
    if d.decided_by != "fullprocess.py":
        return f"model {d.challenger_hex} (F1 {_f(d.challenger_f1)}) {d.deploy_reason}"
    versus = "no model in production" if d.champion_f1 is None else f"production {_f(d.champion_f1)}"
    outcome = "deployed" if d.deployed else "kept production"
    return f"new model F1 {_f(d.challenger_f1)} on {_f(d.eval_rows, ',')} held-out rows vs {versus}: {outcome}"


EPISODE_TEXT = {
    "degrading": "degrading: production's F1 has fallen and no challenger beats it (roll back, approve or retrain by hand)",
    "acknowledged": "drift acknowledged: production stays, and its references move to the new rows",
    "returned": "the data returned: the drift episode is over",
}


def episode_text(d: Decision) -> str:
    """Where the tick left its drift episode; '' outside one."""
    if d.episode_outcome is None:
        return ""
    text = EPISODE_TEXT.get(d.verdict) or EPISODE_TEXT.get(d.episode_outcome)
    if text is None and d.verdict == "kept" and d.challenger_hex is None:
        return "drift episode open: no challenger until the gate can judge one"
    if text is None and d.verdict == "kept" and d.episode_outcome == "open":
        return "drift episode open: the challenger looks better but the evidence is too thin; judged again as it grows"
    return text or ""


def summary(ingest_text: str, decision: Decision | None) -> str:
    """runs.message: one line for a person, written from the values (nothing reads it back)."""
    parts = [ingest_text] if ingest_text else []
    if decision is not None:
        parts += [drift_text(decision), data_drift_text(decision), gate_text(decision), episode_text(decision)]
    return "; ".join(p for p in parts if p)
