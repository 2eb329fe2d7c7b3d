"""A tick's report: the facts read from the database, the confusion matrix kept up to date, the
charts in static/ and the PDF reports/report_<hex>.pdf (laid out by riskmonitor.reporting.pdf)."""

import json
import logging
from pathlib import Path

from riskmonitor.config import Config
from riskmonitor.data import datasets
from riskmonitor.drift import decisions
from riskmonitor.model.scoring import evaluation_data
from riskmonitor.reporting import plots
from riskmonitor.reporting.diagnostics import model_predictions
from riskmonitor.reporting.pdf import F1_ROWS, Facts, render_pdf
from riskmonitor.store import db, storage

log = logging.getLogger(__name__)
HISTORY_ROWS = 5000  # trend plots: the most recent rows of each per-run table


def gather(conn, run_hex: str) -> Facts:
    """Read the rows of one tick and the newest F1 records."""
    run = db.get_run(conn, run_hex)
    if run is None:
        raise LookupError(f"no run {run_hex} in the database")
    production = db.production_model(conn)
    if production is None:
        raise LookupError("no model is deployed yet: run fullprocess.py first")
    per_run = {t.name: db.run_rows(conn, t, run_hex) for t in (db.ingested_files, db.data_drift, db.feature_stats,
                                                               db.missing_data, db.script_timing, db.outdated_packages)}
    return Facts(
        run=run, production=production, files=per_run["ingested_files"], drift=per_run["data_drift"],
        stats=per_run["feature_stats"], missing=per_run["missing_data"], timings=per_run["script_timing"],
        outdated=per_run["outdated_packages"], scores=db.history(conn, db.f1, F1_ROWS),
        decision=decisions.of_runs(conn, [run_hex]).get(run_hex),
    )


def confusion(config: Config, engine, production) -> dict:
    """The production model's confusion matrix on the held-out rows, as kept in the database for the dashboard.

    The last one kept for the same model is brought up to date with the rows held out since (its watermark,
    the id of the last held-out row it counted), so a tick reads its new rows, not all of history."""
    import numpy as np
    from sklearn.metrics import confusion_matrix

    with engine.connect() as conn:
        kept = db.artifact(conn, "confusion")
        kept = json.loads(kept.data) if kept else {}
        mark = kept.get("held_out_id") if kept.get("model") == production.hex else None  # None: count them all
        table, last = datasets.read(conn, config, True, after_id=mark or 0)
    held_out, only_new = table.to_pandas(), mark is not None
    if not only_new and held_out.empty:  # nothing held out yet: scored on the training rows, never brought up to date
        held_out, last = evaluation_data(config, engine), None
    matrix = np.array(kept["matrix"]) if only_new else np.zeros((2, 2), dtype=int)
    if len(held_out):
        predicted = model_predictions(config, engine, held_out)
        matrix = matrix + confusion_matrix(held_out[config.label], predicted, labels=[0, 1])
    rows = (kept["rows"] if only_new else 0) + len(held_out)
    return {"model": production.hex, "rows": rows, "matrix": matrix.tolist(), "held_out_id": last}


def chart(name: str, conn, path: Path | None = None):
    """One chart of the report and the dashboard, drawn from the database: the PNG file at path, or
    (no path) its bytes; None for the confusion matrix before any report computed one."""
    if name == "confusionmatrix":
        stored = db.artifact(conn, "confusion")
        return None if stored is None else plots.confusion_matrix(json.loads(stored.data), path)
    if name == "f1":
        return plots.f1_history(db.history(conn, db.f1, HISTORY_ROWS), db.deployed_models(conn), path)
    if name == "timing":
        return plots.timings(db.history(conn, db.script_timing, HISTORY_ROWS), path)
    return plots.feature_trend(name, db.history(conn, db.feature_stats, HISTORY_ROWS), path)


def write_plots(config: Config, engine) -> dict[str, Path]:
    """Write every PNG of static/; return their paths by chart name (confusionmatrix, f1, timing, features)."""
    with engine.connect() as conn:
        return {name: chart(name, conn, config.static_path / file)
                for name, file in plots.chart_files(config.features).items()}


def write_report(config: Config, engine, run_hex: str) -> Path:
    """Write the plots and reports/report_<hex>.pdf for one tick; return the PDF's path."""
    with engine.connect() as conn:
        facts = gather(conn, run_hex)
    with engine.begin() as conn:  # the dashboard draws the matrix from here, on any host
        db.store_artifact(conn, "confusion", run_hex, json.dumps(confusion(config, engine, facts.production)).encode())
    images = write_plots(config, engine)
    path = config.reports_path / f"report_{run_hex}.pdf"
    pdf = render_pdf(config, facts, images)
    storage.replace_atomically(path, lambda handle: handle.write(pdf))
    with engine.begin() as conn:  # the API serves the report from here, on any host
        db.store_artifact(conn, "report", run_hex, pdf)
        db.prune_reports(conn, config.keep_reports)
    log.info("report written: %s", path)
    return path
