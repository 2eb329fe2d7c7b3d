"""What the app serves from: its state, the production model kept in memory (reloaded when a
tick deploys another one), data files confined to the data folders, validated feature rows, and
the latest report.

Client mistakes are raised as HTTP errors (flask.abort) whose message is safe to show: it may
name the client's own file_name and columns, never a server path or a file's content.
"""

import datetime as dt
import logging
import math
import os
import re
import sys
import threading
import time
from pathlib import Path

from flask import abort, current_app

import db
import storage
import validation
from config import Config

log = logging.getLogger(__name__)
CSV_TYPES = ("text/csv", "application/csv")
NO_MODEL = "no model is deployed yet: run fullprocess.py first"
CHECK_SECONDS = 0.25  # how long a process serves its model before it checks production again
MAX_FILE_NAME = 1024  # characters of a file_name (PATH_MAX is 4096 bytes, a name 255)


def state(key: str):
    """The current app's config, engine or model cache."""
    return current_app.extensions["drat"][key]


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


def resolve_data_file(file_name, config: Config) -> Path:
    """The real path of a CSV inside the data folders; 400/403/404 for anything else."""
    if not isinstance(file_name, str) or not file_name.strip() or "\0" in file_name:
        abort(400, description="file_name must be a non-empty string")
    if len(file_name) > MAX_FILE_NAME:  # no file system takes it, and the answer must not echo it whole
        abort(400, description=f"file_name is too long: at most {MAX_FILE_NAME} characters")
    parts = re.split(r"[\\/]", file_name)
    # Checked before the file system is touched: no absolute path, drive or parent step at all.
    if file_name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", file_name) or ".." in parts:
        abort(400, description="file_name must be a relative path inside the data folders, without '..'")
    folders = [f.resolve() for f in (config.input_folder_path, config.output_folder_path, config.test_data_path)]
    if not any(folder.is_dir() for folder in folders):  # a replica from a bare clone: it has only the database
        abort(404, description="this server has no data folders (it serves from the database only): "
                               "send records or a CSV body, or predict by file_name on the tick's host")
    try:
        path = (config.project_dir / file_name).resolve()  # follows symbolic links to where they lead
        inside = any(path.is_relative_to(folder) for folder in folders)
        is_file = inside and path.is_file()
    except OSError as exc:  # a name the file system refuses (ENAMETOOLONG, ELOOP): no such file
        log.info("data file name refused by the file system: %s", exc.strerror)
        abort(404, description=f"no such data file: {file_name}")
    if not inside:
        abort(403, description=f"{file_name} is not inside the data folders")
    if not is_file:
        abort(404, description=f"no such data file: {file_name}")
    return path


def read_data_file(path: Path) -> bytes:
    """The bytes of a resolved data file; O_NOFOLLOW refuses a symlink swapped in since resolve()."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        raise  # the server's own permissions, not the client's mistake: the app answers 503
    except OSError as exc:  # vanished, replaced by a link, or unreadable since it was checked
        log.warning("cannot open data file %s: %s", path, exc.strerror)
        abort(404, description="the data file cannot be read")
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def frame_from_csv(data: bytes):
    """A CSV body or file as a DataFrame (validation.parse_csv, as ingestion reads files); 400 for anything else."""
    try:
        return validation.parse_csv(data, numeric=state("config").features)
    except validation.InvalidData as exc:
        abort(400, description=f"the CSV is not usable: {exc.reason}")


def frame_from_records(records, features: tuple[str, ...]):
    """A list of {feature: value, ...} objects as a float64 matrix, one row a record, already
    validated (feature_matrix passes it through); 400 for any other shape."""
    import numpy as np

    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        abort(400, description="records must be a non-empty list of objects")
    for number, record in enumerate(records, start=1):
        for feature in features:
            if feature not in record:  # a value the client may not know is sent as null, explicitly
                abort(400, description=f"missing feature {feature} (record {number})")
            value = record[feature]
            # JSON true/false would pass as 1/0 and strings hide typos: features are numbers or null
            # (as in CSV, where True/False are not numbers either).
            if isinstance(value, bool) or not isinstance(value, int | float | type(None)):
                abort(400, description=f"feature {feature} must be a number or null (record {number})")
            if isinstance(value, int) and abs(value) > sys.float_info.max:  # no float can hold it
                abort(400, description=f"feature {feature} is out of range (record {number})")
    matrix = np.array([[math.nan if r[f] is None else float(r[f]) for f in features] for r in records], dtype=np.float64)
    infinite = np.isinf(matrix)  # NaN (JSON's NaN, or null) is missing: the model imputes it
    for column, feature in enumerate(features if infinite.any() else ()):  # as validation.numbers words it
        if infinite[:, column].any():
            row = int(infinite[:, column].argmax())
            abort(400, description=f"non-numeric or infinite value in column {feature} ({validation.RECORDS.name(row)})")
    return matrix


def feature_matrix(frame, config: Config):
    """The feature columns as finite floats (missing values allowed: the model imputes them); the
    same checks as ingestion, without echoing a value (it may come from a server file)."""
    if not hasattr(frame, "columns"):  # records: a matrix validated as they were read
        return frame
    if frame.empty:
        abort(400, description="no rows to predict")
    try:
        return validation.features(frame, config.features, validation.LINES, echo=False)
    except validation.InvalidData as exc:
        abort(400, description=exc.reason)


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
