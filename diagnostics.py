"""Diagnostics an operator checks: predictions, feature statistics, missing data, step timings,
outdated packages, and data drift of new rows against the production model's training data.

    python diagnostics.py [predictions|statistics|missing|timing|outdated|drift]   # none: all

The diagnostics are riskmonitor.reporting.diagnostics'; this command prints them as tables.
"""

import argparse
import sys

from riskmonitor.config import Config, load_config, run_script, setup_logging
from riskmonitor.data import datasets
from riskmonitor.data.stats import dataframe_summary, missing_data
from riskmonitor.reporting.diagnostics import execution_time, model_predictions, refresh_outdated
from riskmonitor.store import db


def _print_table(title: str, header: list[str], rows: list) -> None:
    text = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(header)]
    print(f"\n{title}")
    for row in [header, *text] if text else []:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _show_predictions(config: Config, engine) -> None:
    predicted = model_predictions(config, engine)
    print(f"\npredictions of the production model on testdata.csv: {len(predicted)} rows, "
          f"{sum(predicted)} predicted to exit; the first {min(20, len(predicted))}: {predicted[:20]}")


def _show_statistics(config: Config, engine) -> None:
    with engine.connect() as conn:
        final = datasets.frame(conn, config, False)
    _print_table(f"feature statistics of the training rows ({len(final)} rows)", ["feature", "mean", "median", "std"],
                 [list(r.values()) for r in dataframe_summary(final, config)])


def _show_missing(config: Config, engine) -> None:
    with engine.connect() as conn:
        final = datasets.frame(conn, config, False)
    _print_table(f"missing data in the training rows ({len(final)} rows)", ["column", "fraction missing"],
                 [list(r.values()) for r in missing_data(final, config)])


def _show_timing(config: Config, engine) -> None:
    with engine.connect() as conn:
        rows = execution_time(conn)
    title = f"step timings of tick {rows[0]['hex']}" if rows else "step timings: none recorded yet"
    _print_table(title, ["step", "seconds"], [[r["file"], r["timing"]] for r in rows])


def _show_outdated(config: Config, engine) -> None:
    rows = [list(r.values()) for r in refresh_outdated(config, engine) or []]
    _print_table("outdated requirements" + ("" if rows else ": none (or pip could not tell)"),
                 ["package", "installed", "latest"], rows)


def _show_drift(config: Config, engine) -> None:
    with engine.connect() as conn:
        rows = db.latest_run_rows(conn, db.data_drift)
    title = f"data drift recorded by tick {rows[0].hex}" if rows else "data drift: none recorded yet"
    _print_table(title, ["feature", "KS statistic", "p-value", "PSI", "drifted"],
                 [[r.feature, r.statistic, r.p_value, r.psi, r.drifted] for r in rows])


SHOW = {"predictions": _show_predictions, "statistics": _show_statistics, "missing": _show_missing,
        "timing": _show_timing, "outdated": _show_outdated, "drift": _show_drift}


def main(argv: list[str] | None = None) -> int:
    """Print the chosen diagnostic, or all of them."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", choices=SHOW, help="one diagnostic (default: all)")
    parser.add_argument("--project-dir", help="the project (default: this file's folder)")
    args = parser.parse_args(argv)
    setup_logging()
    config = load_config(args.project_dir) if args.project_dir else load_config()
    engine = db.make_engine(config.database_url)
    db.ensure_schema(engine)
    with engine.connect() as conn:
        production = db.production_model(conn)
    if production is None and args.what != "outdated":
        raise LookupError("no model is deployed yet: run fullprocess.py first")
    for what in [args.what] if args.what else SHOW:
        SHOW[what](config, engine)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))

