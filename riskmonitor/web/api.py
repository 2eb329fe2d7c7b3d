"""The JSON API: predictions from the production model, and the monitoring history the ticks write
to the database (each route written above the function that answers it)."""

import datetime as dt
import io
import json
import logging
import math

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge

from riskmonitor.drift import decisions as decision_records  # the module; decisions() is the route
from riskmonitor.model import registry, serving
from riskmonitor.store import db, storage, uploads
from riskmonitor.web import openapi
from riskmonitor.web.inputs import CSV_TYPES, feature_matrix, prediction_frame, upload_name
from riskmonitor.web.state import database_trouble, ensure_schema, stalled_run, state

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
RUNS_DEFAULT, RUNS_MAX = 50, 500


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


@bp.post("/prediction")
def prediction():
    """Predicted labels and churn probabilities for the rows sent."""
    config = state("config")
    model_hex, model = state("models").get(state("engine"))
    features = feature_matrix(prediction_frame(config), config)
    labels, probabilities = serving.predict(model, features)
    # As jsonify writes it (keys sorted, compact), without its provider's overhead on the busiest route.
    body = json.dumps({"data": labels, "model": model_hex, "probabilities": probabilities}, separators=(",", ":"))
    return current_app.response_class(body + "\n", mimetype="application/json")


@bp.post("/batches")
def batches():
    """Store a CSV batch (?name=NAME.csv) for the next tick, on any host: 201 when stored, 200 when these
    bytes were seen before (uploaded, or read from the input folder). A write: never open without API_TOKEN."""
    config = state("config")
    if state("api_token") is None:
        abort(403, description="uploads are refused while API_TOKEN is unset on the server: "
                               "a write endpoint is never open")
    name = upload_name(request.args.get("name"))
    if request.mimetype not in CSV_TYPES:
        abort(415, description="send the batch as a text/csv body (Content-Type: text/csv; with curl, "
                               "-H 'Content-Type: text/csv' --data-binary @FILE.csv)")
    request.max_content_length = config.max_file_bytes + 1  # one byte more: a chunked body over the limit is seen
    try:
        sha, size, stored = uploads.store(state("engine"), name, request.stream, config.max_file_bytes,
                                          ", ".join(request.access_route)[:200])
    except uploads.UploadTooLarge:
        raise RequestEntityTooLarge() from None
    except uploads.EmptyUpload as exc:
        abort(400, description=str(exc))
    log.info("upload %s (%d bytes, sha256 %s): %s", name, size, sha[:12], "stored" if stored else "seen before")
    return jsonify(sha256=sha, name=name, bytes=size, stored=stored), 201 if stored else 200


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
        records = registry.list_models(conn)
    production = next((r.hex for r in records if r.in_production), None)
    return jsonify(data=[model_json(r) for r in records], production=production)


def model_json(record) -> dict:
    """A registry.ModelRecord as the API shows it."""
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
        ensure_schema(current_app)
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
    stalled = stalled_run(last[0] if last else None, state("config").tick_timeout_seconds)
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
