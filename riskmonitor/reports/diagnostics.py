"""Diagnostics an operator checks: predictions, feature statistics, missing data, step timings,
outdated packages, and data drift of new rows against the production model's training data.

    python diagnostics.py [predictions|statistics|missing|timing|outdated|drift]   # none: all
"""

import argparse
import datetime as dt
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import db
from config import Config, run_script

log = logging.getLogger(__name__)
PSI_EPSILON = 1e-4  # share given to an empty bin, so that PSI stays finite
OUTDATED_MAX_AGE, OUTDATED_RETRY = dt.timedelta(days=1), dt.timedelta(hours=1)  # package versions change daily
CHECK_LOCK = ".outdated_check.lock"  # one outdated-packages check at a time
ROWS_PER_BIN = 20  # fewer PSI bins for small samples: sampling noise alone must stay far below the threshold


def model_predictions(config: Config, engine, data=None) -> list[int]:
    """Predictions (0 or 1) of the production model on a data frame or CSV file (default: testdata.csv)."""
    from scoring import load_production_model

    frame = _as_frame(data, config)
    with engine.connect() as conn:
        _, model = load_production_model(conn, config)
    return [int(p) for p in model.predict(frame[list(config.features)])]


def _as_frame(data, config: Config):
    import pandas as pd

    from ingestion import read_dataset

    if data is None:
        return read_dataset(config.testdata_csv, config)
    if isinstance(data, str | Path):
        return pd.read_csv(config.project_dir / data)  # an absolute path stays as it is
    return data


def _number(value) -> float | None:
    """A plain float for the database; NaN (no values to summarize) becomes NULL."""
    return None if value is None or math.isnan(value) else float(value)


def dataframe_summary(frame, config: Config) -> list[dict]:
    """Mean, median and standard deviation (pandas' sample std) of each feature."""
    return [{"feature": f, "mean": _number(frame[f].mean()), "median": _number(frame[f].median()),
             "std": _number(frame[f].std())} for f in config.features]


def missing_data(frame, config: Config) -> list[dict]:
    """Fraction (0 to 1) of missing values in every column: ids, features and label."""
    return [{"feature": c, "percentage": float(frame[c].isna().mean()) if len(frame) else 0.0} for c in config.columns]


def training_data(frame, config: Config) -> dict[str, list[dict]]:
    """Rows for db.record_diagnostics describing the data a model trains on: feature statistics and missing data."""
    return {"feature_stats": dataframe_summary(frame, config), "missing_data": missing_data(frame, config)}


def execution_time(conn, run_hex: str | None = None) -> list[dict]:
    """Seconds taken by ingestion.py and training.py in one tick (default: the latest that measured them)."""
    rows = db.run_rows(conn, db.script_timing, run_hex) if run_hex else db.latest_run_rows(conn, db.script_timing)
    return [{"file": r.file, "timing": r.timing, "hex": r.hex} for r in rows]


def requirement_names(path: Path) -> set[str] | None:
    """Normalized package names of a requirements file (None when there is no such file)."""
    if not path.is_file():
        return None
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if match:  # options such as -r and blank or comment lines do not match
            names.add(_canonical(match.group(1)))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: Scikit_Learn and scikit-learn are one package


class OutdatedUnknown(RuntimeError):
    """pip could not tell which packages are outdated (no network, a timeout, a failure)."""


def pip_outdated(config: Config) -> list[dict]:
    """The project's requirements with a newer release (package, installed, latest), asking pip and
    the package index within outdated_timeout_seconds; OutdatedUnknown when pip cannot tell."""
    command = [sys.executable, "-m", "pip", "list", "--outdated", "--format=json", "--disable-pip-version-check"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=config.outdated_timeout_seconds)
        listed = json.loads(done.stdout)
    except subprocess.TimeoutExpired:  # no network: pip waits on the index
        raise OutdatedUnknown(f"pip gave no answer within {config.outdated_timeout_seconds} s") from None
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:  # optional information
        raise OutdatedUnknown(f"pip list failed: {exc}") from None
    wanted = requirement_names(config.project_dir / "requirements.txt")
    return [{"package": p["name"], "installed": p["version"], "latest": p["latest_version"]}
            for p in listed if wanted is None or _canonical(p["name"]) in wanted]


def outdated_packages(config: Config) -> list[dict]:
    """pip_outdated, or [] when pip cannot tell or the check is off (outdated_timeout_seconds 0)."""
    if config.outdated_timeout_seconds <= 0:
        log.info("outdated packages not checked: outdated_timeout_seconds is 0")
        return []
    try:
        return pip_outdated(config)
    except OutdatedUnknown as exc:
        log.warning("outdated packages unknown: %s", exc)
        return []


def refresh_outdated(config: Config, engine) -> list[dict] | None:
    """Ask pip and store its answer with its time (what `python diagnostics.py outdated` does); None
    when pip could not tell, or another check is running already (it stores the answer)."""
    import fcntl

    if config.outdated_timeout_seconds <= 0:
        log.info("outdated packages not checked: outdated_timeout_seconds is 0")
        return None
    with open(config.project_dir / CHECK_LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another outdated-packages check is running: it stores the answer")
            return None
        try:
            packages, error = pip_outdated(config), None
        except OutdatedUnknown as exc:
            log.warning("outdated packages unknown: %s", exc)
            packages, error = None, str(exc)
        with engine.begin() as conn:
            db.record_package_check(conn, packages, error)
    return packages


def check_due(latest, now) -> bool:
    """A check is due a day after the last one, or an hour after one that pip could not answer."""
    if latest is None:
        return True
    return now - latest.checked_at >= (OUTDATED_MAX_AGE if latest.ok else OUTDATED_RETRY)


def start_refresh(config: Config, engine) -> None:
    """Run `python diagnostics.py outdated` in a process of its own (a session of its own: the tick
    neither waits for it nor takes it down when it ends); it stores its answer for later ticks."""
    if config.outdated_timeout_seconds <= 0:
        log.info("outdated packages not checked: outdated_timeout_seconds is 0")
        return
    command = [sys.executable, str(Path(__file__).resolve()), "outdated", "--project-dir", str(config.project_dir)]
    subprocess.Popen(command, cwd=config.project_dir, env={**os.environ, "DATABASE_URL": config.database_url},
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)
    log.info("outdated packages: the last check is due again, refreshing it in the background")


def known_outdated(config: Config, engine) -> list[dict]:
    """The last answer of the outdated-packages check, at once: a tick never waits on the network
    for it. When a check is due, start_refresh asks pip for a later tick."""
    with engine.connect() as conn:
        latest, answered = db.latest_package_checks(conn)
    if check_due(latest, db.now()):
        start_refresh(config, engine)
        with engine.connect() as conn:  # the answer, if the refresh gave it already
            latest, answered = db.latest_package_checks(conn)
    return [] if answered is None else json.loads(answered.packages)


def population_stability_index(expected, actual, bins: int) -> float:
    """PSI of actual against expected, over quantile bins of expected plus one bin for missing values."""
    import numpy as np

    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    present = expected[~np.isnan(expected)]
    # Unique inner edges: skewed integer features (many zeros) have repeated quantiles. Values
    # below the reference's minimum or above its maximum get open-ended bins of their own, so a
    # shift past the reference's range counts even for a feature with few distinct values.
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if present.size else np.array([])
    if present.size:  # below the reference's minimum and above its maximum: bins of their own
        edges = np.unique(np.concatenate([[present.min()], edges, [np.nextafter(present.max(), np.inf)]]))
    p, q = _bin_shares(expected, edges), _bin_shares(actual, edges)
    return float(np.sum((q - p) * np.log(q / p)))


def _bin_shares(values, edges):
    import numpy as np

    missing = np.isnan(values)
    counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=edges.size + 1)
    shares = np.append(counts, missing.sum()) / max(values.size, 1)
    return np.maximum(shares, PSI_EPSILON)


def ks_critical_value(new_rows: int, reference_rows: int, confidence: float) -> float:
    """The KS D that two samples of one distribution exceed with probability 1 - confidence
    (the asymptotic two-sample bound; conservative for counts with ties)."""
    if not new_rows or not reference_rows:
        return math.inf
    c = math.sqrt(-math.log((1 - confidence) / 2) / 2)
    return c * math.sqrt((new_rows + reference_rows) / (new_rows * reference_rows))


def data_drift(new, reference, config: Config) -> list[dict]:
    """KS statistic, p-value and PSI of each feature of the new rows against the reference rows,
    and the verdict: PSI at least psi_threshold, or KS D at least ks_threshold and beyond the
    sampling noise of both sample sizes."""
    import numpy as np
    from scipy.stats import ks_2samp

    if len(new) == 0 or len(reference) == 0:
        return []
    # PSI of two samples of one distribution is about chi2(bins - 1) / n: 10 bins need a few
    # hundred rows to stay far below 0.2, so smaller samples are compared over fewer bins.
    bins = max(2, min(config.psi_bins, min(len(new), len(reference)) // ROWS_PER_BIN))
    rows = []
    for feature in config.features:
        actual, expected = (np.asarray(f[feature], dtype=float) for f in (new, reference))
        actual_present, expected_present = actual[~np.isnan(actual)], expected[~np.isnan(expected)]
        ks = ks_2samp(actual_present, expected_present) if actual_present.size and expected_present.size else None
        psi = population_stability_index(expected, actual, bins)
        # The verdict rests on effect sizes that do not grow with n, not on the KS p-value: a
        # p-value answers "are the distributions identical?", so at a million rows it flags trivial
        # shifts. KS D is the largest gap between the two CDFs (0 to 1, the same scale at any
        # size); it must also exceed what sampling noise gives at these sizes, so a small batch
        # does not raise an alarm. PSI catches what moves many quantiles at once.
        noise = ks_critical_value(actual_present.size, expected_present.size, config.data_drift_confidence)
        d = None if ks is None else float(ks.statistic)
        shifted = d is not None and d >= max(config.ks_threshold, noise)
        rows.append({"feature": feature, "statistic": d, "p_value": None if ks is None else float(ks.pvalue),
                     "psi": psi, "drifted": bool(psi >= config.psi_threshold or shifted)})
    return rows


def training_reference(config: Config, model_hex: str):
    """The training features saved with a model (training.save_reference), or None if it has none."""
    import pandas as pd

    from training import reference_path

    path = reference_path(config, model_hex)
    if not path.is_file():
        log.warning("model %s has no training data reference (%s): data drift not computed", model_hex, path.name)
        return None
    return pd.read_csv(path)


def tick_diagnostics(config: Config, new_data, index: dict, production_hex: str | None, engine) -> dict[str, list[dict]]:
    """A tick's rows for db.record_diagnostics: statistics of finaldata from its index (never read
    whole here), drift of the new rows, and the last answer of the outdated-packages check."""
    reference = training_reference(config, production_hex) if production_hex else None
    return {
        **indexed_summary(index, config, reference),
        "data_drift": [] if reference is None else data_drift(new_data, reference, config),
        "outdated_packages": known_outdated(config, engine),
    }


def indexed_summary(index: dict, config: Config, reference) -> dict[str, list[dict]]:
    """feature_stats and missing_data of all of finaldata from its running statistics (datafiles):
    mean, sample std and missing shares are exact; the median is the production model's training
    data's (its saved reference), None before the first model (a tick that trains replaces these
    rows with the exact statistics of what it read)."""
    stats = index["stats"]
    features = []
    for feature in config.features:
        f = stats["features"][feature]
        median = None if reference is None else _number(reference[feature].median())
        features.append({"feature": feature, "mean": f["mean"] if f["n"] else None, "median": median,
                         "std": math.sqrt(f["m2"] / (f["n"] - 1)) if f["n"] > 1 else None})
    missing = [{"feature": c, "percentage": stats["missing"][c] / stats["rows"] if stats["rows"] else 0.0}
               for c in config.columns]
    return {"feature_stats": features, "missing_data": missing}


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
    from ingestion import read_dataset

    final = read_dataset(config.finaldata_csv, config)
    _print_table(f"feature statistics of finaldata.csv ({len(final)} rows)", ["feature", "mean", "median", "std"],
                 [list(r.values()) for r in dataframe_summary(final, config)])


def _show_missing(config: Config, engine) -> None:
    from ingestion import read_dataset

    final = read_dataset(config.finaldata_csv, config)
    _print_table(f"missing data in finaldata.csv ({len(final)} rows)", ["column", "fraction missing"],
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
    from config import load_config, setup_logging

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
