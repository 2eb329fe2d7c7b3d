"""The served model: the production model kept in memory by each process (reloaded when a tick
deploys another one), and its predictions by the fitted numbers themselves."""

import logging
import math
import threading
import time

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
    memory are its bytes read from the database, verified and unpickled. Every process (each
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
                # Verified before unpickling: bytes that do not match are never loaded.
                self._loaded = (*key, storage.unpickle_verified(stored.data, key[1], f"model {key[0]}"))
                log.info("loaded production model %s", key[0])
            self._checked = now
            return self._loaded[0], self._loaded[2]

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


def predict(model, features, names: tuple[str, ...]) -> tuple[list[int], list[float]]:
    """Predicted labels and the probability of the positive class (label 1) for each row: by the
    fitted numbers themselves for a pipeline as training.py makes it (Applied), else by scikit-learn."""
    applied = Applied.of(model)
    if applied is not None:
        labels, probabilities = applied(features.to_numpy(dtype="float64") if hasattr(features, "to_numpy") else features)
    else:
        import pandas as pd

        frame = features if hasattr(features, "to_numpy") else pd.DataFrame(features, columns=list(names))
        labels, probabilities = model.predict(frame), model.predict_proba(frame)[:, list(model.classes_).index(1)]
    return [int(x) for x in labels.tolist()], [round(p, 6) for p in probabilities.tolist()]


class Applied:
    """A fitted SimpleImputer(median) -> StandardScaler -> binary LogisticRegression pipeline applied
    with the very operations scikit-learn runs after its input checks (the rows are checked
    already): per request it skips those checks, the largest cost of one prediction. Kept per model."""

    _cache: dict = {}

    def __init__(self, model):
        imputer, scaler, regression = (step for _, step in model.steps)
        self.statistics = imputer.statistics_
        self.mean = scaler.mean_ if scaler.with_mean else None
        self.scale = scaler.scale_ if scaler.with_std else None
        self.coef_t, self.intercept, self.classes = regression.coef_.T, regression.intercept_, regression.classes_
        self.positive = list(self.classes).index(1)
        from scipy.special import expit

        self.expit = expit  # (an import statement per request costs a lookup)

    @classmethod
    def of(cls, model):
        """The Applied form of a model (made once per model), or None for any other kind of model."""
        key = id(model)
        if key not in cls._cache:
            cls._cache.clear()  # one production model at a time: the replaced one is dropped
            cls._cache[key] = (model, cls(model) if cls.fits(model) else None)
        return cls._cache[key][1]

    @staticmethod
    def fits(model) -> bool:
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        kinds = (SimpleImputer, StandardScaler, LogisticRegression)
        if type(model) is not Pipeline or [type(step) for _, step in model.steps] != list(kinds):
            return False
        imputer, _, regression = (step for _, step in model.steps)
        return (imputer.strategy == "median" and not imputer.add_indicator and isinstance(imputer.missing_values, float)
                and math.isnan(imputer.missing_values) and len(regression.classes_) == 2 and 1 in list(regression.classes_))

    def __call__(self, matrix):
        """(labels, probabilities of label 1) as Pipeline.predict and predict_proba compute them."""
        import numpy as np

        # Laid out as scikit-learn receives a frame's values (column-major): the product's rounding
        # depends on the layout, and the answers must be scikit-learn's to the last bit.
        matrix = np.asfortranarray(matrix, dtype=np.float64)
        matrix = np.where(np.isnan(matrix), self.statistics, matrix)  # SimpleImputer.transform
        if self.mean is not None:  # StandardScaler.transform
            matrix -= self.mean
        if self.scale is not None:
            matrix /= self.scale
        scores = (matrix @ self.coef_t + self.intercept).reshape(-1)  # LogisticRegression.decision_function
        labels = self.classes[(scores > 0).astype(int)]
        probability = self.expit(scores)  # _predict_proba_lr: the positive class's column; the other is 1 - p
        return labels, (probability if self.positive == 1 else 1 - probability)
