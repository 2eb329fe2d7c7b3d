"""The API and dashboard: predictions from the production model, and the monitoring history
the ticks write to the database.

    python app.py [--host 127.0.0.1] [--port 8000] [--project-dir DIR]   # development server
    gunicorn "app:create_app()"                                         # production (Procfile)
"""

import argparse
import datetime as dt
import io
import json
import logging
import math
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Flask, abort, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import auth
import dashboard
import db
import decisions as decision_records  # the module; decisions() is the route
import deployment
import openapi
import serving
import storage
from config import PROJECT_DIR, Config, env_setting, load_config, run_script, setup_logging
from serving import state

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
RUNS_DEFAULT, RUNS_MAX = 50, 500


def create_app(config: Config | str | os.PathLike | None = None) -> Flask:
    """The Flask app for a Config, a project directory, or (None) the directory of this file."""
    if not logging.getLogger().handlers:  # gunicorn configures only its own loggers
        setup_logging()
    if not isinstance(config, Config):
        config = load_config() if config is None else load_config(config)
    app = Flask(__name__, static_folder=None)  # plots come from config.static_path, served by dashboard
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_mb * 1024 * 1024
    app.extensions["drat"] = {"config": config, "engine": db.make_engine(config.database_url),
                              "models": serving.ModelCache(), "schema_ready": False,
                              "api_token": env_setting(config.project_dir, "API_TOKEN")}
    _ensure_schema(app, at_startup=True)
    _register_errors(app)
    app.before_request(auth.require_token)  # first: nothing about the database to a client without the token
    app.before_request(_prepare_database)
    app.after_request(_security_headers)
    app.register_blueprint(bp)
    app.register_blueprint(dashboard.bp)
    return app


def _ensure_schema(app: Flask, at_startup: bool = False) -> None:
    """Set up an empty database, or check the revision of an existing one, until it is found right.

    A database that is behind raises db.SchemaOutOfDate (503 until `python dbsetup.py` upgrades it).
    """
    ext = app.extensions["drat"]
    if ext["schema_ready"]:
        return
    try:
        db.ensure_schema(ext["engine"])
    except sa.exc.DBAPIError as exc:
        if not at_startup or not database_trouble(exc):
            raise  # answered 503 by the handler below
        # The database may come back (or be restored) later: start anyway, /health says what is wrong.
        log.error("database unreachable or unusable at startup: %s", exc)
        return
    except db.SchemaOutOfDate as exc:
        if not at_startup:
            raise
        log.error("%s", exc)
        return
    ext["schema_ready"] = True
    ext["engine"].dispose()  # pooled connections must not be shared by processes forked after startup


def _prepare_database() -> None:
    """Check the schema for the first request that finds the database reachable; /health reports instead of failing."""
    if request.endpoint != "api.health":
        _ensure_schema(current_app)


def database_trouble(exc: sa.exc.DBAPIError) -> str | None:
    """What to tell a client about a database that cannot be used, or None for an error that is a bug."""
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):  # down, unreachable, locked, unopenable
        return "the database is unavailable: it cannot be reached or opened; try again shortly"
    if type(exc) is sa.exc.DatabaseError:  # SQLite: "file is not a database", "database disk image is malformed"
        return "the database is unavailable: its file is damaged or is not a database; restore it from a backup"
    return None


def _json_error(status: int, message: str, response=None):
    payload = jsonify(error=message)
    if response is None:
        return payload, status
    response.set_data(payload.get_data())  # keep the exception's own headers (Allow for 405)
    response.content_type = "application/json"
    return response


def _register_errors(app: Flask) -> None:
    """Every error is JSON {"error": ...}; tracebacks and server details stay in the log."""

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        return _json_error(413, f"request body too large: the limit is {state('config').max_request_mb} MB")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _json_error(exc.code, exc.description or exc.name, exc.get_response())

    @app.errorhandler(serving.NoModelDeployed)
    def no_model(exc):
        return _json_error(503, str(exc))

    @app.errorhandler(storage.ModelIntegrityError)
    def model_mismatch(exc):
        # Never unpickled. The message names a model hex, never a server path.
        log.error("refusing to serve the production model: %s", exc)
        return _json_error(503, f"the production model is not served: {exc}")

    @app.errorhandler(db.SchemaOutOfDate)
    def schema_out_of_date(exc):
        return _json_error(503, str(exc))

    @app.errorhandler(PermissionError)
    def unreadable(exc):
        # A file the pipeline wrote (model, plot, report) that the user the API runs as may not read.
        log.error("permission denied on %s %s: %s", request.method, request.path, exc)
        return _json_error(503, "a file this answer needs cannot be read by the user the API runs as: "
                                "check the permissions of the project's output folders")

    @app.errorhandler(sa.exc.DBAPIError)
    def database_down(exc):
        message = database_trouble(exc)
        if message is None:
            log.exception("database error on %s %s", request.method, request.path)
            return _json_error(500, "internal server error")
        log.error("database error on %s %s: %s", request.method, request.path, exc)
        return _json_error(503, message)

    @app.errorhandler(Exception)
    def internal_error(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json_error(500, "internal server error")


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        # Everything the dashboard uses comes from this server; its CSS is inline.
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; img-src 'self' data:; "
                                    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                                    "frame-ancestors 'none'")
    return response


def number(value):
    """A float for JSON, None for missing or non-finite values (NaN is not JSON)."""
    return None if value is None or not math.isfinite(value) else float(value)


def timestamp(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC (the database gives aware UTC times: db.UTCDateTime)."""
    return None if value is None else value.isoformat()


def run_json(row, decision=None) -> dict:
    """A runs row as the API shows it, with its decision record (None when it made none)."""
    return {"hex": row.hex, "command": row.command, "started_at": timestamp(row.started_at),
            "finished_at": timestamp(row.finished_at), "status": row.status, "message": row.message,
            "report_error": row.report_error, "decision": decision.as_json() if decision else None}


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
    if request.mimetype in serving.CSV_TYPES:
        return serving.frame_from_csv(request_body())
    if not request.is_json:
        abort(415, description="send JSON ({\"file_name\": ...} or {\"records\": [...]}) or a text/csv body")
    body = request_json()
    if not isinstance(body, dict) or len({"file_name", "records"} & body.keys()) != 1:
        abort(400, description="the body must be a JSON object with either file_name or records")
    if len(body) != 1:  # a misspelt option must not be ignored in silence
        abort(400, description="the body must hold file_name or records and nothing else")
    if "records" in body:
        return serving.frame_from_records(body["records"], config.features)
    path = serving.resolve_data_file(body["file_name"], config)
    return serving.frame_from_csv(serving.read_data_file(path))


@bp.post("/prediction")
def prediction():
    """Predicted labels and churn probabilities for the rows sent."""
    config = state("config")
    model_hex, model = state("models").get(state("engine"))
    features = serving.feature_matrix(prediction_frame(config), config)
    labels, probabilities = serving.predict(model, features, config.features)
    # As jsonify writes it (keys sorted, compact), without its provider's overhead on the busiest route.
    body = json.dumps({"data": labels, "model": model_hex, "probabilities": probabilities}, separators=(",", ":"))
    return current_app.response_class(body + "\n", mimetype="application/json")


@bp.get("/scoring")
def scoring():
    """The production model's F1 on the held-out test data."""
    with state("engine").connect() as conn:
        score = db.production_score(conn)
    if score is None:
        raise serving.NoModelDeployed(serving.NO_MODEL)
    return jsonify(data=number(score.f1_score), model=score.model_hex)


@bp.get("/summarystats")
def summary_stats():
    """Mean, median and std of each feature, computed by the run that trained the production model."""
    with state("engine").connect() as conn:
        key = db.production_model(conn)
        if key is None:
            raise serving.NoModelDeployed(serving.NO_MODEL)
        rows = db.run_rows(conn, db.feature_stats, key.hex)
    data = [[r.feature, number(r.mean), number(r.median), number(r.std)] for r in rows]
    return jsonify(data=data, model=key.hex)


@bp.get("/diagnostics")
def diagnostics():
    """Missing data and step timings of the latest run that measured them, and outdated packages."""
    with state("engine").connect() as conn:
        missing = db.latest_run_rows(conn, db.missing_data)
        timing = db.latest_run_rows(conn, db.script_timing)
        packages = db.latest_run_rows(conn, db.outdated_packages)
    return jsonify(missing_data=[[r.feature, number(r.percentage)] for r in missing],
                   execution_time=[[r.file, number(r.timing)] for r in timing],
                   outdated_packages=[[r.package, r.installed, r.latest] for r in packages])


def _limit() -> int:
    """?limit=N of the listing routes (default 50, at most 500)."""
    limit = request.args.get("limit", str(RUNS_DEFAULT))
    if not limit.isdigit() or int(limit) < 1:
        abort(400, description="limit must be a positive integer")
    return min(int(limit), RUNS_MAX)


@bp.get("/runs")
def runs():
    """The newest runs first, each with its decision record; ?limit=N (default 50, at most 500)."""
    with state("engine").connect() as conn:
        rows = db.recent_runs(conn, _limit())
        made = decision_records.of_runs(conn, [r.hex for r in rows])
    return jsonify(data=[run_json(r, made.get(r.hex)) for r in rows])


@bp.get("/decisions")
def decisions():
    """The decision records, newest first; ?limit=N (default 50, at most 500)."""
    with state("engine").connect() as conn:
        records = decision_records.recent(conn, _limit())
    return jsonify(data=[d.as_json() for d in records])


@bp.get("/models")
def models():
    """Every recorded model, newest first: its scores, what it was trained on, and when it was in production."""
    with state("engine").connect() as conn:
        records = deployment.list_models(conn)
    production = next((r.hex for r in records if r.in_production), None)
    return jsonify(data=[model_json(r) for r in records], production=production)


def model_json(record) -> dict:
    """A deployment.ModelRecord as the API shows it."""
    periods = [{"deployed_at": timestamp(p.deployed_at), "until": timestamp(p.until), "decided_by": p.decided_by,
                "reason": p.reason, "run": p.run} for p in record.periods]
    return {"hex": record.hex, "trained_at": timestamp(record.trained_at), "train_rows": record.train_rows,
            "f1_score": number(record.f1_score), "trained_on": record.trained_on,
            "in_production": record.in_production, "periods": periods}


@bp.get("/apireturns")
def api_returns():
    """Where a client writes its report of the API's answers: apireturns_path as configured, relative, as plain text."""
    config = state("config")
    try:
        path = config.apireturns_path.relative_to(config.project_dir).as_posix()
    except ValueError:  # configured outside the project: its name alone, never a server path
        path = config.apireturns_path.name
    return path, 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.get("/openapi.json")
def openapi_document():
    """The API's OpenAPI 3 document, as this server runs (with or without API_TOKEN)."""
    return jsonify(openapi.document(state("config").features, auth=state("api_token") is not None))


@bp.get("/health")
def health():
    """Database and model state; 503 when the database cannot be reached."""
    try:
        _ensure_schema(current_app)
        with state("engine").connect() as conn:
            model = db.production_model(conn)
            last = db.recent_runs(conn, 1)
            model_json = None if model is None else model_health(model)
    except sa.exc.DBAPIError as exc:  # the point of a health check: say so, do not fail
        message = database_trouble(exc)
        if message is None:
            raise
        log.error("health: database unusable: %s", exc)
        return jsonify(status="error", database="unavailable", error=message), 503
    except db.SchemaOutOfDate as exc:
        return jsonify(status="error", database="out of date", error=str(exc)), 503
    status = "ok" if model_json is None or model_json["file"] == "ok" else "degraded"
    stalled = serving.stalled_run(last[0] if last else None, state("config").tick_timeout_seconds)
    extra = {"stalled": stalled} if stalled else {}
    return jsonify(status="degraded" if stalled else status, database="ok", model=model_json,
                   last_run=run_json(last[0]) if last else None, **extra)


def model_health(model) -> dict:
    """The production models row, and whether its file verifies (loading it into this worker)."""
    try:
        state("models").get(state("engine"))
        file_state = "ok"
    except storage.ModelIntegrityError as exc:  # reported, not raised: /health describes, /prediction refuses
        log.error("health: %s", exc)
        file_state = "does not match its recorded checksum" if "sha256" in str(exc) else "missing from the database"
    return {"hex": model.hex, "f1_score": number(model.f1_score), "deployed_at": timestamp(model.deployed_at),
            "train_rows": model.train_rows, "file": file_state}


@bp.get("/report")
def report():
    """The newest PDF report."""
    with state("engine").connect() as conn:
        stored = db.artifact(conn, "report")
    if stored is None:
        abort(404, description="no report yet: reports are written by ticks that ingest new data")
    return send_file(io.BytesIO(stored.data), mimetype="application/pdf", download_name=f"report_{stored.hex}.pdf")


def main(argv: list[str] | None = None) -> int:
    """Run the development server (use gunicorn in production)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="project with config.json")
    args = parser.parse_args(argv)
    setup_logging()
    create_app(args.project_dir).run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
