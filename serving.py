"""What the app serves from: its state, the production model kept in memory (reloaded when a
tick deploys another one), data files confined to the data folders, validated feature rows, and
the latest report.

Client mistakes are raised as HTTP errors (flask.abort) whose message is safe to show: it may
name the client's own file_name and columns, never a server path or a file's content.
"""

import datetime as dt
import logging
import os
import re
import sys
import threading
from pathlib import Path

from flask import abort, current_app

import db
import storage
import validation
from config import Config

log = logging.getLogger(__name__)
CSV_TYPES = ("text/csv", "application/csv")
NO_MODEL = "no model is deployed yet: run fullprocess.py first"
MAX_FILE_NAME = 1024  # characters of a file_name (PATH_MAX is 4096 bytes, a name 255)


def state(key: str):
    """The current app's config, engine or model cache."""
    return current_app.extensions["drat"][key]


class NoModelDeployed(LookupError):
    """No model has been deployed yet."""


class ModelCache:
    """The production model of this process, checked against the models row on every use.

    One cheap query per request finds the production (hex, sha256); only when it differs from
    the model in memory are its bytes read from the database, verified and unpickled. Every
    process (each gunicorn worker, on any host) notices a deployment on its next request, with no
    signal or restart, and needs no file.
    """

    def __init__(self):
        self._lock = threading.Lock()  # the development server answers requests in threads
        self._loaded = None  # (hex, sha256, model)

    def get(self, conn):
        """(hex, model) of production; NoModelDeployed, or ModelIntegrityError for bytes that do not match."""
        key = db.production_model(conn)
        if key is None:
            raise NoModelDeployed(NO_MODEL)
        with self._lock:
            if self._loaded is None or self._loaded[:2] != (key.hex, key.sha256):
                stored = db.artifact(conn, "model", key.hex)
                if stored is None:
                    raise storage.ModelIntegrityError(f"model {key.hex} has no bytes in the database "
                                                      "(run python dbsetup.py on the tick's host)")
                # Verified before unpickling: bytes that do not match are never loaded.
                self._loaded = (key.hex, key.sha256, storage.unpickle_verified(stored.data, key.sha256, f"model {key.hex}"))
                log.info("loaded production model %s", key.hex)
            return self._loaded[0], self._loaded[2]


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
    """A list of {feature: value, ...} objects as a DataFrame; 400 for any other shape."""
    import pandas as pd

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
    frame = pd.DataFrame.from_records([{f: r[f] for f in features} for r in records], columns=list(features))
    try:  # checked here, where a row is still a record: the messages name record N
        return validation.features(frame, features, validation.RECORDS, echo=False)
    except validation.InvalidData as exc:
        abort(400, description=exc.reason)


def feature_matrix(frame, config: Config):
    """The feature columns as finite floats (missing values allowed: the model imputes them); the
    same checks as ingestion, without echoing a value (it may come from a server file)."""
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


def predict(model, features) -> tuple[list[int], list[float]]:
    """Predicted labels and the probability of the positive class (label 1) for each row."""
    labels = model.predict(features)
    probabilities = model.predict_proba(features)
    positive = list(model.classes_).index(1)
    return [int(x) for x in labels], [round(float(p), 6) for p in probabilities[:, positive]]
