"""The Flask app factory (create_app): the JSON API and the dashboard on one app, the token check, the
database readied on first use, and every error answered as JSON."""

import logging
import os

import sqlalchemy as sa
from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from riskmonitor.config import Config, env_setting, load_config, setup_logging
from riskmonitor.model import serving
from riskmonitor.store import db, storage
from riskmonitor.web import api, auth, dashboard
from riskmonitor.web.state import database_trouble, ensure_schema, state

log = logging.getLogger(__name__)


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
    if app.extensions["drat"]["api_token"] is None:
        log.warning("API_TOKEN is not set: the API is open to anyone who can reach it (uploads refused)")
    ensure_schema(app, at_startup=True)
    if app.extensions["drat"]["schema_ready"]:  # workers forked from here (gunicorn --preload) start warm
        app.extensions["drat"]["models"].warm(app.extensions["drat"]["engine"])
    _register_errors(app)
    app.before_request(auth.require_token)  # first: nothing about the database to a client without the token
    app.before_request(_prepare_database)
    app.after_request(_security_headers)
    app.register_blueprint(api.bp)
    app.register_blueprint(dashboard.bp)
    return app


def _prepare_database() -> None:
    """Check the schema for the first request that finds the database reachable; /health reports instead of failing."""
    if request.endpoint != "api.health":
        ensure_schema(current_app)


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
        if exc.description != RequestEntityTooLarge.description:  # our own abort(413, ...) says what was too large
            return _json_error(413, exc.description)
        if request.endpoint == "api.batches":
            return _json_error(413, f"upload too large: the limit is max_file_mb ({state('config').max_file_mb} MB)")
        return _json_error(413, f"request body too large: the limit is {state('config').max_request_mb} MB")

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return _json_error(exc.code, exc.description or exc.name, exc.get_response())

    @app.errorhandler(serving.NoModelDeployed)
    def no_model(exc):
        return _json_error(503, str(exc))

    @app.errorhandler(storage.ModelIntegrityError)
    def model_mismatch(exc):
        # Never loaded. The message names a model hex, never a server path.
        log.error("refusing to serve the production model: %s", exc)
        return _json_error(503, f"the production model is not served: {exc}")

    @app.errorhandler(db.SchemaOutOfDate)
    def schema_out_of_date(exc):
        if request.endpoint == "dashboard.index":  # a person in a browser: the empty state says what to run
            return render_template("unavailable.html", message=str(exc)), 503
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

