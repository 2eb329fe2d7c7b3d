"""Score a model: F1 with its confusion counts, on the held-out data or any rows; the production model as stored."""

import logging
import math
from dataclasses import dataclass

from riskmonitor.config import Config
from riskmonitor.data import datasets
from riskmonitor.model import fitted
from riskmonitor.store import db

log = logging.getLogger(__name__)


def score_model(model, frame, config: Config) -> float:
    """F1 of the model's predictions on frame (0 when nothing is predicted or present)."""
    return confusion(model, frame, config).f1


@dataclass(frozen=True)
class Confusion:
    """A model's confusion counts on some rows: enough to pool batches and know F1's sampling error."""

    tp: int
    fp: int
    fn: int
    tn: int

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @classmethod
    def of_row(cls, row, prefix: str = "") -> "Confusion":
        """The counts a database row holds in its columns tp, fp, fn and tn (named with `prefix`)."""
        return cls(*(getattr(row, prefix + c) for c in db.COUNTS))

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def f1(self) -> float:
        """2tp / (2tp + fp + fn); 0 when nothing is predicted or present (as sklearn's zero_division=0)."""
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0

    @property
    def informative(self) -> bool:
        """False when no row is positive, predicted or true: such rows say nothing about F1."""
        return self.tp + self.fp + self.fn > 0

    @property
    def f1_se(self) -> float:
        """Standard error of F1 over a random sample of rows of this size (delta method, multinomial
        counts): var = 4 tp e (tp + e) / (2 tp + e)^4 with e = fp + fn. A zero count would claim
        certainty (F1 exactly 0 or 1), so then half a row is added to tp and to fp and fn first."""
        tp, errors = self.tp, self.fp + self.fn
        if tp == 0 or errors == 0:
            tp, errors = tp + 0.5, errors + 1.0
        return math.sqrt(4 * tp * errors * (tp + errors)) / (2 * tp + errors) ** 2

    def as_row(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def confusion(model, frame, config: Config) -> Confusion:
    """The model's confusion counts on frame's rows."""
    return counts_of(model.predict(frame[list(config.features)]), frame[config.label].to_numpy())


def counts_of(predicted, actual) -> Confusion:
    """Confusion counts of 0/1 predictions against 0/1 labels."""
    import numpy as np

    predicted, actual = np.asarray(predicted).astype(bool), np.asarray(actual).astype(bool)
    return Confusion(tp=int(np.sum(predicted & actual)), fp=int(np.sum(predicted & ~actual)),
                     fn=int(np.sum(~predicted & actual)), tn=int(np.sum(~predicted & ~actual)))


def evaluation_data(config: Config, engine, pending=None):
    """The held-out rows, with those of `pending` (a tick's new rows, not stored yet); the training rows
    only while nothing has been held out yet."""
    with engine.connect() as conn:
        frame = datasets.frame(conn, config, True, pending)
        if frame.empty:
            log.warning("no held-out rows yet: scoring on the training rows instead")
            frame = datasets.frame(conn, config, False, pending)
    if frame.empty:
        raise ValueError("no ingested data to score on: add CSV files to the input folder")
    return frame


def load_production_model(conn, config: Config):
    """(models row, model) of production; ModelIntegrityError if the file does not match."""
    row = db.production_model(conn)
    if row is None:
        raise LookupError("no model is deployed yet: run fullprocess.py first")
    return row, fitted.load(config.production_model, row.sha256)
