"""What a request sends: its body within the size limit, JSON, the rows of a /prediction (records, a
CSV body, or a data file confined to the data folders), and validated feature rows.

Client mistakes are raised as HTTP errors (flask.abort) whose message is safe to show: it may
name the client's own file_name and columns, never a server path or a file's content.
"""

import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from flask import abort, request
from werkzeug.exceptions import RequestEntityTooLarge

from riskmonitor.config import Config
from riskmonitor.data import validation
from riskmonitor.web.state import state

log = logging.getLogger(__name__)
CSV_TYPES = ("text/csv", "application/csv")
MAX_FILE_NAME = 1024  # characters of a file_name (PATH_MAX is 4096 bytes, a name 255)
MAX_UPLOAD_NAME = 255  # characters of an upload's name, as of a file name in the input folder


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
    folders = [f.resolve() for f in (config.input_folder, config.output_folder_path, config.test_data_path) if f is not None]
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


def read_data_file(path: Path, limit_mb: int) -> bytes:
    """The bytes of a resolved data file; O_NOFOLLOW refuses a symlink swapped in since resolve(), and a file
    over the request limit (max_request_mb) is refused with 413 unread, as a body that large would be."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except PermissionError:
        raise  # the server's own permissions, not the client's mistake: the app answers 503
    except OSError as exc:  # vanished, replaced by a link, or unreadable since it was checked
        log.warning("cannot open data file %s: %s", path, exc.strerror)
        abort(404, description="the data file cannot be read")
    limit = limit_mb * 1024 * 1024
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size  # of the file opened: a file swapped in later is not read
        data = b"" if size > limit else handle.read(limit + 1)  # a file that grew since is cut at the limit
    if max(size, len(data)) > limit:
        abort(413, description=f"the data file is too large to predict on by file_name "
                               f"({max(size, len(data)) / 2**20:,.1f} MB, the limit is max_request_mb: {limit_mb} MB)")
    return data


def upload_name(name: str | None) -> str:
    """?name= of an upload: 1-255 printable characters ending .csv, without a path separator (400 otherwise).
    The messages never echo it: it is shown escaped where the uploads are listed."""
    if not name:
        abort(400, description="name is required: POST /batches?name=NAME.csv")
    if len(name) > MAX_UPLOAD_NAME:
        abort(400, description=f"name is too long: at most {MAX_UPLOAD_NAME} characters")
    if not name.isprintable():
        abort(400, description="name must be printable characters: no control characters or line breaks")
    if "/" in name or "\\" in name:
        abort(400, description="name must be a file name, without a path separator (/ or \\)")
    if not name.lower().endswith(".csv"):
        abort(400, description="name must end with .csv")
    return name


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


def request_body() -> bytes:
    """The request body; 413 when it is over the limit, chunked bodies included."""
    length, limit = request.content_length, request.max_content_length
    if length is not None and (limit is None or length <= limit):  # read as is: Werkzeug's stream costs more
        data = request.environ["wsgi.input"].read(length)  # than the rest of a small prediction's parsing
        if len(data) < length:
            abort(400, description="the body ended before its Content-Length: the client disconnected")
        return data
    data = request.get_data(cache=True)
    # Werkzeug cuts a chunked body (no Content-Length) at the limit without a word: reaching it is too large.
    if request.content_length is None and request.max_content_length is not None \
            and len(data) >= request.max_content_length:
        raise RequestEntityTooLarge()
    return data


def request_json():
    """The request body parsed as JSON; 400 when it is not JSON or nested too deeply to parse."""
    try:
        return json.loads(request_body())
    except ValueError:  # includes bytes that are not UTF-8/16/32 text
        abort(400, description="the body is not valid JSON")
    except RecursionError:
        abort(400, description="the body is not valid JSON: it is nested too deeply")


def prediction_frame(config: Config):
    """The rows of a /prediction request: JSON file_name or records, or a text/csv body."""
    if request.mimetype in CSV_TYPES:
        return frame_from_csv(request_body())
    if not request.is_json:
        abort(415, description="send JSON ({\"file_name\": ...} or {\"records\": [...]}) or a text/csv body")
    body = request_json()
    if not isinstance(body, dict) or len({"file_name", "records"} & body.keys()) != 1:
        abort(400, description="the body must be a JSON object with either file_name or records")
    if len(body) != 1:  # a misspelt option must not be ignored in silence
        abort(400, description="the body must hold file_name or records and nothing else")
    if "records" in body:
        return frame_from_records(body["records"], config.features)
    path = resolve_data_file(body["file_name"], config)
    return frame_from_csv(read_data_file(path, config.max_request_mb))

