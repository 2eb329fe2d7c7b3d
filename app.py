"""The API and dashboard: predictions from the production model, and the monitoring history
the ticks write to the database.

    python app.py [--host 127.0.0.1] [--port 8000] [--project-dir DIR]   # development server
    gunicorn "app:create_app()"                                         # production (Procfile)
"""

import argparse
import datetime as dt
import logging
import math
import os
import sys
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, abort, current_app, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

import dashboard
import db
import serving
import storage
from config import PROJECT_DIR, Config, load_config, setup_logging
from serving import state

log = logging.getLogger(__name__)
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
                              "models": serving.ModelCache(config), "schema_ready": False}
    _ensure_schema(app, at_startup=True)
    _register_errors(app)
    app.before_request(_prepare_database)
    app.after_request(_security_headers)
    _register_api(app)
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
    except sa.exc.OperationalError as exc:
        if not at_startup:
            raise  # answered 503 by the handler below
        # The database may come back later: start anyway, /health says what is wrong.
        log.error("database unreachable at startup: %s", exc)
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
    if request.endpoint != "health":
        _ensure_schema(current_app)


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
        # Never unpickled; the next tick restores the production file from its archived copy.
        log.error("refusing to serve the production model: %s", exc)
        return _json_error(503, "the production model file does not match its recorded checksum; "
                                "it is not served until it is restored")

    @app.errorhandler(db.SchemaOutOfDate)
    def schema_out_of_date(exc):
        return _json_error(503, str(exc))

    @app.errorhandler(PermissionError)
    def unreadable(exc):
        # A file the pipeline wrote (model, plot, report) that the user the API runs as may not read.
        log.error("permission denied on %s %s: %s", request.method, request.path, exc)
        return _json_error(503, "a file this answer needs cannot be read by the user the API runs as: "
                                "check the permissions of the project's output folders")

    @app.errorhandler(sa.exc.OperationalError)
    def database_down(exc):
        log.error("database error on %s %s: %s", request.method, request.path, exc)
        return _json_error(503, "the database is unavailable; try again shortly")

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
    """ISO 8601 in UTC; SQLite returns the stored UTC times without their zone."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()


def run_json(row) -> dict:
    """A runs row as the API shows it."""
    return {"hex": row.hex, "command": row.command, "started_at": timestamp(row.started_at),
            "finished_at": timestamp(row.finished_at), "status": row.status, "message": row.message}


def prediction_frame(config: Config):
    """The rows of a /prediction request: JSON file_name or records, or a text/csv body."""
    if request.mimetype in serving.CSV_TYPES:
        return serving.frame_from_csv(request.get_data())
    if not request.is_json:
        abort(415, description="send JSON ({\"file_name\": ...} or {\"records\": [...]}) or a text/csv body")
    body = request.get_json(silent=True)
    if body is None:
        abort(400, description="the body is not valid JSON")
    if not isinstance(body, dict) or len({"file_name", "records"} & body.keys()) != 1:
        abort(400, description="the body must be a JSON object with either file_name or records")
    if "records" in body:
        return serving.frame_from_records(body["records"], config.features)
    path = serving.resolve_data_file(body["file_name"], config)
    return serving.frame_from_csv(serving.read_data_file(path))


def _register_api(app: Flask) -> None:
    app.add_url_rule("/prediction", view_func=prediction, methods=["POST"])
    for view in (scoring, summary_stats, diagnostics, runs, health, report):
        app.add_url_rule("/" + view.__name__.replace("_", ""), view_func=view, methods=["GET"])


def prediction():
    """Predicted labels and churn probabilities for the rows sent."""
    config = state("config")
    with state("engine").connect() as conn:
        model_hex, model = state("models").get(conn)
    features = serving.feature_matrix(prediction_frame(config), config)
    labels, probabilities = serving.predict(model, features)
    return jsonify(data=labels, probabilities=probabilities, model=model_hex)


def scoring():
    """The production model's F1 on the held-out test data."""
    with state("engine").connect() as conn:
        score = db.production_score(conn)
    if score is None:
        raise serving.NoModelDeployed(serving.NO_MODEL)
    return jsonify(data=number(score.f1_score), model=score.model_hex)


def summary_stats():
    """Mean, median and std of each feature, computed by the run that trained the production model."""
    with state("engine").connect() as conn:
        key = db.production_model(conn)
        if key is None:
            raise serving.NoModelDeployed(serving.NO_MODEL)
        rows = db.run_rows(conn, db.feature_stats, key.hex)
    data = [[r.feature, number(r.mean), number(r.median), number(r.std)] for r in rows]
    return jsonify(data=data, model=key.hex)


def diagnostics():
    """Missing data and step timings of the latest run that measured them, and outdated packages."""
    with state("engine").connect() as conn:
        missing = db.latest_run_rows(conn, db.missing_data)
        timing = db.latest_run_rows(conn, db.script_timing)
        packages = db.latest_run_rows(conn, db.outdated_packages)
    return jsonify(missing_data=[[r.feature, number(r.percentage)] for r in missing],
                   execution_time=[[r.file, number(r.timing)] for r in timing],
                   outdated_packages=[[r.package, r.installed, r.latest] for r in packages])


def runs():
    """The newest runs first; ?limit=N (default 50, at most 500)."""
    limit = request.args.get("limit", str(RUNS_DEFAULT))
    if not limit.isdigit() or int(limit) < 1:
        abort(400, description="limit must be a positive integer")
    with state("engine").connect() as conn:
        rows = db.recent_runs(conn, min(int(limit), RUNS_MAX))
    return jsonify(data=[run_json(r) for r in rows])


def health():
    """Database and model state; 503 when the database cannot be reached."""
    try:
        _ensure_schema(current_app)
        with state("engine").connect() as conn:
            model = db.production_model(conn)
            last = db.recent_runs(conn, 1)
            model_json = None if model is None else model_health(conn, model)
    except sa.exc.OperationalError as exc:  # the point of a health check: say so, do not fail
        log.error("health: database unreachable: %s", exc)
        return jsonify(status="error", database="unreachable", error="the database is unavailable"), 503
    except db.SchemaOutOfDate as exc:
        return jsonify(status="error", database="out of date", error=str(exc)), 503
    status = "ok" if model_json is None or model_json["file"] == "ok" else "degraded"
    return jsonify(status=status, database="ok", model=model_json, last_run=run_json(last[0]) if last else None)


def model_health(conn, model) -> dict:
    """The production models row, and whether its file verifies (loading it into this worker)."""
    try:
        state("models").get(conn)
        file_state = "ok"
    except storage.ModelIntegrityError:  # reported, not raised: /health describes, /prediction refuses
        log.error("health: the production model file does not match model %s", model.hex)
        file_state = "does not match its recorded checksum"
    except storage.UnreadableFile:
        log.error("health: the production model file of model %s cannot be read by this user", model.hex)
        file_state = "cannot be read by the user the API runs as"
    return {"hex": model.hex, "f1_score": number(model.f1_score), "deployed_at": timestamp(model.deployed_at),
            "train_rows": model.train_rows, "file": file_state}


def report():
    """The newest PDF report."""
    path = serving.latest_report(state("config"))
    if path is None:
        abort(404, description="no report yet: reports are written by ticks that ingest new data")
    return send_file(path, mimetype="application/pdf", download_name=path.name)


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
    sys.exit(main())
