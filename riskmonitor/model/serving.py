"""The served model: the production model kept in memory by each process (reloaded when a tick
deploys another one), and its predictions by the fitted numbers themselves."""

import logging
import math
import threading
import time

import sqlalchemy as sa

from riskmonitor.model import fitted
from riskmonitor.store import db, storage

log = logging.getLogger(__name__)
NO_MODEL = "no model is deployed yet: run fullprocess.py first"
CHECK_SECONDS = 0.25  # how long a process serves its model before it checks production again


class NoModelDeployed(LookupError):
    """No model has been deployed yet."""


class ModelCache:
    """The production model of this process, checked against the models row at most every
    CHECK_SECONDS.

    One plain query finds the production (hex, sha256); only when it differs from the model in
    memory are its bytes read from the database, verified and parsed (plain numbers, fitted.py). Every process (each
    gunicorn worker, on any host) serves a deployment on its first request CHECK_SECONDS after it,
    with no signal or restart, and needs no file (DESIGN.md: within one second). The query runs on
    a database connection the cache keeps (no pool checkout or ping, no result metadata); between
    checks a prediction does not touch the database at all.
    """

    def __init__(self, check_seconds: float = CHECK_SECONDS):
        self._lock = threading.Lock()  # the development server answers requests in threads
        self._loaded = None  # (hex, sha256, model)
        self._checked = -math.inf  # time.monotonic() of the last check that found the loaded model
        self._connection = None  # the DBAPI connection of the check, kept across requests
        self.check_seconds = check_seconds

    def get(self, engine):
        """(hex, model) of production; NoModelDeployed, or ModelIntegrityError for bytes that do not match."""
        with self._lock:
            now = time.monotonic()
            if self._loaded is not None and now - self._checked < self.check_seconds:
                return self._loaded[0], self._loaded[2]
            key = self._production_key(engine)
            if key is None:
                raise NoModelDeployed(NO_MODEL)
            if self._loaded is None or self._loaded[:2] != key:
                with engine.connect() as conn:
                    stored = db.artifact(conn, "model", key[0])
                if stored is None:
                    raise storage.ModelIntegrityError(f"model {key[0]} has no bytes in the database "
                                                      "(run python dbsetup.py on the tick's host)")
                # Plain numbers (fitted.py), never a pickle: bytes that do not parse as a model are refused.
                self._loaded = (*key, fitted.from_verified(stored.data, key[1], f"model {key[0]}"))
                log.info("loaded production model %s", key[0])
            self._checked = now
            return self._loaded[0], self._loaded[2]

    def warm(self, engine) -> None:
        """Load the production model now (if there is one), then let go of the database: a server that forks its
        workers after this (gunicorn --preload) starts each one with the model and every import a prediction
        needs, and no connection shared across processes."""
        import pandas  # noqa: F401 - what a prediction's parsing imports, once, before the fork
        import scipy.special  # noqa: F401

        try:
            self.get(engine)
        except (NoModelDeployed, storage.ModelIntegrityError, sa.exc.SQLAlchemyError) as exc:
            log.info("no production model loaded before serving: %s", exc)  # each request says why
        finally:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                self._checked = -math.inf  # a forked worker checks production on its first request
            engine.dispose()

    def _production_key(self, engine) -> tuple[str, str] | None:
        """(hex, sha256) of the production model, or None. A connection that fails (a database restart)
        is dropped and the query goes through SQLAlchemy instead, which reports errors as it always does."""
        try:
            if self._connection is None:
                self._connection = engine.raw_connection()
                if engine.dialect.name == "postgresql":  # each check sees the latest commit, no transaction stays open
                    self._connection.driver_connection.autocommit = True
            cursor = self._connection.cursor()
            try:
                cursor.execute(PRODUCTION_KEY)
                row = cursor.fetchone()
            finally:
                cursor.close()
        except engine.dialect.loaded_dbapi.Error:
            if self._connection is not None:
                self._connection.invalidate()
                self._connection = None
            with engine.connect() as conn:
                row = db.production_model(conn)
                row = row and (row.hex, row.sha256)
        return tuple(row) if row else None


PRODUCTION_KEY = f"SELECT hex, sha256 FROM {db.models.name} WHERE is_production"


def predict(model: fitted.FittedModel, features) -> tuple[list[int], list[float]]:
    """Predicted labels and the probability of the positive class (label 1) for each row of a frame (in the
    model's feature order) or a float matrix: by the fitted numbers themselves, skipping scikit-learn's input
    checks (the rows are checked already), the largest cost of one prediction."""
    labels, probabilities = model.apply(features.to_numpy(dtype="float64") if hasattr(features, "to_numpy") else features)
    return [int(x) for x in labels.tolist()], [round(p, 6) for p in probabilities.tolist()]
