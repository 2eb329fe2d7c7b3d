"""Drift episodes: what a drift verdict starts and a later tick ends.

An episode opens when a tick finds drift (model drift, or data drift that retrains). Its rows are every
batch since the drift began: they grow across ticks, and they are the challenger's window and the gate's
evidence, so that small batches add up to a window the gate can judge. It ends in one of three ways:
- `deployed`: a challenger passed the gate;
- `acknowledged`: the gate kept production with enough evidence while its F1 had not fallen (data drift
  alone, such as a shift of a feature the labels do not follow): the references move to the episode's
  rows, the F1 reference to production's counts on its held-out rows;
- `returned`: three ticks in a row found neither model nor data drift.

While it is open, a tick trains a challenger only when the gate can judge one (enough held-out rows) and
the evidence has grown by half since the last challenger; when the gate keeps production while its F1 has
fallen, for the second time in the episode, the verdict is `degrading` (no better model). At most one
alert per episode and outcome: `drift` once production's F1 has fallen (data drift alone alerts no one
until its episode deploys: the deployment's message), `degrading` once.
"""

import json
from dataclasses import dataclass

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.model.scoring import Confusion
from riskmonitor.store import db

QUIET_TICKS = 3  # ticks in a row without drift that end an episode as returned


@dataclass(frozen=True)
class Episode:
    """An open episode as a tick finds it (id None: opened by this tick, written by its commit)."""

    id: int | None
    start_rows: int  # data-set rows before its first batch
    challenger_rows: int | None = None  # its rows when the last challenger was trained
    alerted: tuple[str, ...] = ()
    quiet: int = 0  # earlier ticks of the episode in a row, newest first, that found no drift

    def rows(self, stored_rows: int, new_rows: int) -> int:
        """The episode's rows once this tick's new rows are counted."""
        return stored_rows + new_rows - self.start_rows


@dataclass(frozen=True)
class Step:
    """What a tick does to its episode: written by its commit."""

    episode: Episode
    outcome: str  # open | deployed | acknowledged | returned
    verdict: str  # the tick's: kept | deployed | acknowledged | degrading | no_drift
    challenger_rows: int | None  # as it stands after this tick
    alerts: tuple[str, ...] = ()  # the alert events this tick sends for it (not sent before)
    reference: Confusion | None = None  # acknowledged: production's new F1 reference


def current(conn: sa.Connection, model_hex: str) -> Episode | None:
    """The open episode of the production model in its current period in production, or None."""
    row = conn.execute(sa.select(db.episodes).where(
        db.episodes.c.model_hex == model_hex, db.episodes.c.status == "open", _since_deployed(model_hex, "opened_hex"))
        .order_by(db.episodes.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    recent = conn.execute(sa.select(db.decisions.c.model_drifted, db.decisions.c.data_drifted)
                          .where(db.decisions.c.episode == row.id).order_by(db.decisions.c.id.desc())
                          .limit(QUIET_TICKS)).all()
    quiet = 0
    for decision in recent:
        if decision.model_drifted or decision.data_drifted:
            break
        quiet += 1
    return Episode(row.id, row.start_rows, row.challenger_rows, tuple(json.loads(row.alerted or "[]")), quiet)


def acknowledged(conn: sa.Connection, model_hex: str):
    """The latest acknowledged episode of the model in its current period in production (its reference
    counts and the run that closed it), or None: the model's references are those it was deployed with."""
    return conn.execute(sa.select(db.episodes).where(
        db.episodes.c.model_hex == model_hex, db.episodes.c.status == "acknowledged",
        _since_deployed(model_hex, "closed_hex")).order_by(db.episodes.c.id.desc()).limit(1)).first()


def _since_deployed(model_hex: str, column: str):
    """The episode's run (opened_hex or closed_hex) came after the model's latest deployment: an episode of
    an earlier period in production (before a rollback and a redeployment) is over."""
    latest = sa.select(sa.func.max(db.deployments.c.id)).where(db.deployments.c.model_hex == model_hex).scalar_subquery()
    deployed_run = (sa.select(db.runs.c.id).where(db.runs.c.hex == sa.select(db.deployments.c.hex)
                                                  .where(db.deployments.c.id == latest).scalar_subquery())
                    .scalar_subquery())
    episode_run = sa.select(db.runs.c.id).where(db.runs.c.hex == db.episodes.c[column]).scalar_subquery()
    return sa.or_(deployed_run.is_(None), episode_run > deployed_run)


def reference_counts(row) -> Confusion:
    return Confusion.of_row(row, "reference_")


def held_out_needed(config: Config) -> int:
    """The held-out rows the gate needs to judge a challenger: those of retrain_window_min_rows rows."""
    return round(config.retrain_window_min_rows * config.test_fraction)


def can_judge(config: Config, rows: int) -> bool:
    """Whether a window of `rows` new rows holds enough held-out rows for the gate."""
    return round(rows * config.test_fraction) >= held_out_needed(config)


GROWTH = 1.5  # within an episode, the next challenger once its rows have grown by half since the last


def retrain_due(config: Config, episode: Episode, rows: int) -> bool:
    """A challenger only when the gate can judge it, and when the evidence has grown by half since the last
    (doubling waited too long in 200-row batches: a second challenger after a first loss came at tick 10)."""
    if not can_judge(config, rows):
        return False
    return episode.challenger_rows is None or not can_judge(config, episode.challenger_rows) \
        or rows >= GROWTH * episode.challenger_rows


def write(conn: sa.Connection, step: Step, run_hex: str, model_hex: str) -> int:
    """Insert or update the episode in the tick's transaction; its id."""
    e = step.episode
    values = {"status": step.outcome, "challenger_rows": step.challenger_rows,
              "alerted": json.dumps([*e.alerted, *step.alerts]),
              "closed_hex": None if step.outcome == "open" else run_hex}
    if step.reference is not None:
        values.update({f"reference_{c}": getattr(step.reference, c) for c in db.COUNTS})
    if e.id is None:
        return conn.execute(db.episodes.insert().values(model_hex=model_hex, opened_hex=run_hex,
                                                        start_rows=e.start_rows, **values)
                            .returning(db.episodes.c.id)).scalar_one()
    conn.execute(db.episodes.update().where(db.episodes.c.id == e.id).values(**values))
    return e.id
