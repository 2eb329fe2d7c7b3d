"""The dashboard (GET /) and its charts, drawn from the database at request time: a replica on any
host, with no files of the tick's, shows what the tick's host shows."""

import datetime as dt
import io
import threading

from flask import Blueprint, abort, render_template, request, send_file, url_for
from markupsafe import Markup, escape

from riskmonitor.drift import decisions
from riskmonitor.model import registry
from riskmonitor.reporting import plots, report
from riskmonitor.store import db
from riskmonitor.web.state import state

bp = Blueprint("dashboard", __name__)
STATUS_TONES = {"deployed": "good", "no_drift": "good", "done": "neutral", "no_new_data": "neutral",
                "kept": "info", "running": "warn", "failed": "bad"}
CACHED_CHARTS = 64  # PNGs kept per process: a few versions of every chart
_charts: dict[tuple[str, str], bytes] = {}
_drawing = threading.Lock()  # matplotlib's rc settings are global: one chart at a time per process


@bp.get("/")
def index():
    """The monitoring dashboard."""
    config = state("config")
    with state("engine").connect() as conn:
        model = db.production_model(conn)
        version = db.data_version(conn)
        runs = db.recent_runs(conn, 25)
        context = {
            "model": model,
            "runs": runs,
            "decisions": decisions.of_runs(conn, [r.hex for r in runs]),  # each run's verdict, from its record
            "decision": next(iter(decisions.recent(conn, 1)), None),
            "last_check": next((r for r in db.f1_history(conn, 50) if r.dataset == "newdata"), None),
            "quarantined": db.quarantined_files(conn, 50),
            "file_counts": db.file_counts(conn),
            # Both from the run that trained the production model: one data set, not two ticks' worth.
            "stats": db.run_rows(conn, db.feature_stats, model.hex) if model else [],
            "missing": {r.feature: r.percentage for r in db.run_rows(conn, db.missing_data, model.hex)} if model else {},
            "timing": db.latest_run_rows(conn, db.script_timing),
            "drift": db.latest_run_rows(conn, db.data_drift),
            "outdated": db.latest_run_rows(conn, db.outdated_packages),
            "report": db.artifact_hex(conn, "report"),
            "has_confusion": db.artifact_hex(conn, "confusion") is not None,
            "models": registry.list_models(conn),
        }
    charts = {name: url_for("dashboard.chart", name=name, v=version) for name in plots.chart_files(config.features)}
    if not context["has_confusion"]:
        charts["confusionmatrix"] = None  # drawn once a report has computed it: an empty state, not a broken image
    return render_template("dashboard.html", **context, plots=charts, features=config.features,
                           tones=STATUS_TONES, now=db.now())


@bp.get("/charts/<name>.png")
def chart(name: str):
    """One chart as a PNG, drawn from the database and kept per data version (?v= from the page)."""
    if name not in plots.chart_files(state("config").features):
        abort(404, description="no such chart")
    with state("engine").connect() as conn:
        version = db.data_version(conn)
        png = _charts.get((name, version))
        if png is None:
            with _drawing:
                png = report.chart(name, conn)
            if png is None:
                abort(404, description="no such chart yet: a report computes the confusion matrix")
            if len(_charts) >= CACHED_CHARTS:
                _charts.clear()
            _charts[(name, version)] = png
    # The page links each chart with the data version it shows, so such a URL may be cached for long.
    cacheable = request.args.get("v") == version
    return send_file(io.BytesIO(png), mimetype="image/png", max_age=86400 if cacheable else 0)


@bp.app_template_filter("breakable")
def breakable(name: str) -> Markup:
    """A snake_case name that may wrap after its underscores on a narrow screen."""
    return escape(name).replace("_", Markup("_<wbr>"))


@bp.app_template_filter("when")
def when(value: dt.datetime | None) -> str:
    """A stored time as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M UTC")  # stored times come back in UTC (db.UTCDateTime)


@bp.app_template_filter("period")
def period(span) -> str:
    """'start → end' of a registry.Period, the end without its date when it is the same day."""
    end = "now" if span.until is None else when(span.until)
    if end[:10] == when(span.deployed_at)[:10]:
        end = end[11:]
    return f"{when(span.deployed_at)} → {end}"


@bp.app_template_filter("duration")
def duration(run) -> str:
    """How long a run took, in a unit a person reads at a glance."""
    if run.finished_at is None or run.started_at is None:
        return "—"
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
