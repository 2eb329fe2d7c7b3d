"""The dashboard (GET /) and the plots it shows, served from config.static_path only."""

import datetime as dt
import re

from flask import Blueprint, abort, render_template, request, send_file, url_for
from markupsafe import Markup, escape

import db
import decisions
import plots
from serving import latest_report, state

bp = Blueprint("dashboard", __name__)
PLOT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.png")
STATUS_TONES = {"deployed": "good", "no_drift": "good", "done": "neutral", "no_new_data": "neutral",
                "kept": "info", "running": "warn", "failed": "bad"}


@bp.get("/")
def index():
    """The monitoring dashboard."""
    config = state("config")
    with state("engine").connect() as conn:
        model = db.production_model(conn)
        runs = db.recent_runs(conn, 25)
        context = {
            "model": model,
            "runs": runs,
            "decisions": decisions.of_runs(conn, [r.hex for r in runs]),  # each run's verdict, from its record
            "decision": next(iter(decisions.recent(conn, 1)), None),
            "last_check": next((r for r in db.f1_history(conn, 50) if r.dataset == "newdata"), None),
            "quarantined": db.quarantined_files(conn, 50),
            "file_counts": db.file_counts(conn),
            "stats": db.run_rows(conn, db.feature_stats, model.hex) if model else [],
            "missing": {r.feature: r.percentage for r in db.latest_run_rows(conn, db.missing_data)},
            "timing": db.latest_run_rows(conn, db.script_timing),
            "drift": db.latest_run_rows(conn, db.data_drift),
            "outdated": _outdated_packages(conn),
        }
    report = latest_report(config)
    return render_template("dashboard.html", **context, plots=_plots(config), features=config.features,
                           report=report.name if report else None, tones=STATUS_TONES, now=db.now())


@bp.get("/plots/<name>")
def plot(name: str):
    """A PNG written by reporting.py; nothing outside the plot folder, and nothing but PNGs."""
    folder = state("config").static_path.resolve()
    path = (folder / name).resolve() if PLOT_NAME.fullmatch(name) else None
    if path is None or path.parent != folder or not path.is_file():
        abort(404, description="no such plot")
    # The dashboard links each plot with its mtime, so a versioned URL may be cached for long.
    return send_file(path, mimetype="image/png", max_age=86400 if "v" in request.args else 0)


def _outdated_packages(conn) -> list:
    return db.latest_run_rows(conn, db.outdated_packages)


def _plots(config) -> dict[str, str | None]:
    """URL (with a version that changes when the file does) of each plot reporting.py draws, None when absent."""
    names = {"f1": "f1.png", "confusionmatrix": "confusionmatrix.png", "timing": "timing.png"}
    names.update({feature: plots.file_name(feature) for feature in config.features})
    urls = {}
    for key, name in names.items():
        try:
            urls[key] = url_for("dashboard.plot", name=name, v=(config.static_path / name).stat().st_mtime_ns)
        except FileNotFoundError:  # not drawn yet: the template shows an empty state, not a broken image
            urls[key] = None
    return urls


@bp.app_template_filter("breakable")
def breakable(name: str) -> Markup:
    """A snake_case name that may wrap after its underscores on a narrow screen."""
    return escape(name).replace("_", Markup("_<wbr>"))


@bp.app_template_filter("when")
def when(value: dt.datetime | None) -> str:
    """A stored time as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None:
        return "—"
    value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)  # SQLite drops the (UTC) zone
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.app_template_filter("duration")
def duration(run) -> str:
    """How long a run took, in a unit a person reads at a glance."""
    if run.finished_at is None or run.started_at is None:
        return "—"
    seconds = (run.finished_at - run.started_at).total_seconds()
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
