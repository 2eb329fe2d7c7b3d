"""Diagnostics an operator checks: the production model's predictions, step timings, outdated
packages, and a tick's rows of them (with the statistics of riskmonitor.data.stats and the data
drift of riskmonitor.drift.data_drift). `python diagnostics.py` prints them."""

import datetime as dt
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

from riskmonitor.config import PROJECT_DIR, Config
from riskmonitor.data import datasets
from riskmonitor.data.stats import running_summary
from riskmonitor.drift.data_drift import data_drift, training_reference
from riskmonitor.model.scoring import load_production_model
from riskmonitor.store import db

log = logging.getLogger(__name__)
OUTDATED_MAX_AGE, OUTDATED_RETRY = dt.timedelta(days=1), dt.timedelta(hours=1)  # package versions change daily
CHECK_LOCK = ".outdated_check.lock"  # one outdated-packages check at a time


def model_predictions(config: Config, engine, data=None) -> list[int]:
    """Predictions (0 or 1) of the production model on a data frame or CSV file (default: testdata.csv)."""
    frame = _as_frame(data, config, engine)
    with engine.connect() as conn:
        _, model = load_production_model(conn, config)
    return [int(p) for p in model.predict(frame[list(config.features)])]


def _as_frame(data, config: Config, engine):
    import pandas as pd

    if data is None:
        with engine.connect() as conn:
            return datasets.frame(conn, config, True)
    if isinstance(data, str | Path):
        return pd.read_csv(config.project_dir / data)  # an absolute path stays as it is
    return data


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
    command = [sys.executable, str(PROJECT_DIR / "diagnostics.py"), "outdated", "--project-dir", str(config.project_dir)]
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


def tick_diagnostics(config: Config, new_data, stats: dict, production_hex: str | None, engine) -> dict[str, list[dict]]:
    """A tick's rows for db.record_diagnostics: statistics of the training rows from their running
    statistics (never read whole here), drift of the new rows, and the last answer of the
    outdated-packages check."""
    reference = training_reference(engine, production_hex) if production_hex else None
    return {
        **running_summary(stats, config, reference),
        "data_drift": [] if reference is None else data_drift(new_data, reference, config),
        "outdated_packages": known_outdated(config, engine),
    }
