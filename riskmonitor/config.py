"""Load config.json and DATABASE_URL once into a frozen, typed Config."""

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent  # the project: the commands, config.json and the data folders
# pyarrow (the CSV path, and pandas' strings) allocates through the system allocator unless told otherwise
# (set before pyarrow is imported: every script imports this module first). Memory it frees goes back to
# malloc, where numpy and Python reuse it: with pyarrow's default (mimalloc) a 100-row tick on a 2,000,000-row
# history peaked 34 MB higher and a 1,000,000-row tick ran 0.8 s slower (bench/speed.py, 2026-11-30).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
DRIFT_TESTS = ("pooled", "raw", "parametric", "nonparametric")


@dataclass(frozen=True)
class Config:
    project_dir: Path
    database_url: str
    # Folders, relative to the project directory in config.json, absolute here (cron starts elsewhere).
    # Where batches arrive, never modified: a local folder, an object-store URL (s3://bucket/prefix, read
    # through fsspec), or None (uploads through the API only).
    input_folder_path: Path | str | None
    output_folder_path: Path  # finaldata.csv: every valid ingested row, de-duplicated
    test_data_path: Path  # testdata.csv: held-out rows no model trains on
    output_model_path: Path  # every trained model, model_<hex>.json (its fitted numbers)
    prod_deployment_path: Path  # the deployed model, trainedmodel.json
    static_path: Path  # PNG plots
    reports_path: Path  # PDF reports
    apireturns_path: Path  # what apicalls.py writes
    sqlite_path: Path  # the embedded database used when DATABASE_URL is unset
    label: str
    features: tuple[str, ...]
    id_columns: tuple[str, ...]  # read and kept, but never fed to the model
    test_fraction: float  # share of rows held out, chosen by a hash of the row (stable across ticks)
    drift_test: str  # pooled (default) | raw | parametric | nonparametric
    drift_confidence: float  # pooled: one-sided confidence that F1 fell, split over the windows it looks at
    parametric_sigmas: float  # parametric: drift when F1 < mean - k*std of earlier scores
    nonparametric_iqr_factor: float  # nonparametric: drift when F1 < Q1 - k*IQR of earlier scores
    drift_min_earlier_scores: int  # (non)parametric: fewer earlier scores of comparable size: the pooled test
    psi_threshold: float  # data drift: PSI at or above this is drift (0.2 is the usual "major shift")
    psi_bins: int  # quantile bins of the reference data for PSI
    ks_threshold: float  # data drift: KS D at or above this (and above sampling noise) is drift
    data_drift_confidence: float  # KS D must exceed its critical value at this confidence (per feature)
    data_drift_retrains: bool  # a data-drift verdict retrains, like model drift
    retrain_window_min_rows: int  # after drift the challenger learns the recent rows: at least this many new rows
    gate_margin: float  # after a drift verdict the challenger is deployed unless worse than this in F1
    gate_confidence: float  # one-sided confidence of the gate's paired comparison
    random_seed: int
    max_request_mb: int  # API request bodies above this get 413
    keep_reports: int  # report PDFs kept in the database (the newest); the files in reports/ stay
    outdated_timeout_seconds: int  # bound on `pip list --outdated`, which needs the network; 0: no check
    tick_timeout_seconds: int  # a tick running longer fails (and /health reports a run running longer)
    max_file_mb: int = 1024  # the largest input file or upload: a larger file is quarantined unread, an upload gets 413
    alert_webhook_url: str | None = None  # ALERT_WEBHOOK_URL (environment or .env): where alerts.py posts

    @property
    def input_folder(self) -> Path | None:
        """The input folder when it is local; None for a bucket URL or uploads only."""
        return self.input_folder_path if isinstance(self.input_folder_path, Path) else None

    @property
    def max_file_bytes(self) -> int:
        return self.max_file_mb * 1024 * 1024

    @property
    def finaldata_csv(self) -> Path:
        return self.output_folder_path / "finaldata.csv"

    @property
    def testdata_csv(self) -> Path:
        return self.test_data_path / "testdata.csv"

    @property
    def production_model(self) -> Path:
        return self.prod_deployment_path / "trainedmodel.json"

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.id_columns, *self.features, self.label)


_PATH_KEYS = {f.name for f in fields(Config) if f.type is Path} - {"project_dir"}
_FILE_KEYS = {f.name for f in fields(Config)} - {"project_dir", "database_url", "alert_webhook_url"}
# Keys added since the first release: an earlier config.json without them keeps loading.
DEFAULTS = {"max_file_mb": 1024}
BUCKET_SCHEMES = ("s3://",)  # object stores an input_folder_path URL may name (fsspec with s3fs)


def normalize_database_url(url: str) -> str:
    """Map postgres:// and postgresql:// (Heroku, psql) to the psycopg2 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def env_setting(project_dir: Path, name: str) -> str | None:
    """A setting from the environment, else from project_dir/.env (never committed), else None; surrounding
    whitespace is no part of it (a padded API_TOKEN would lock everyone out), and empty is unset."""
    value = (os.environ.get(name) or "").strip()
    if not value and (project_dir / ".env").is_file():
        from dotenv import dotenv_values  # only when there is a .env to read

        value = (dotenv_values(project_dir / ".env").get(name) or "").strip()
    return value or None


def database_url_from_env(project_dir: Path, sqlite_path: Path) -> str:
    """DATABASE_URL from the environment, else from project_dir/.env, else the SQLite file."""
    url = env_setting(project_dir, "DATABASE_URL")
    return normalize_database_url(url) if url else f"sqlite:///{sqlite_path}"


def load_config(project_dir: Path | str = PROJECT_DIR, database_url: str | None = None) -> Config:
    """Read project_dir/config.json; unknown or missing keys raise ValueError naming them."""
    project_dir = Path(project_dir).resolve()
    raw = json.loads((project_dir / "config.json").read_text(encoding="utf-8"))
    raw = {**DEFAULTS, **raw}
    unknown, missing = set(raw) - _FILE_KEYS, _FILE_KEYS - set(raw)
    if unknown:
        raise ValueError(f"config.json: unknown key(s): {', '.join(sorted(unknown))}")
    if missing:
        raise ValueError(f"config.json: missing key(s): {', '.join(sorted(missing))}")
    if raw["drift_test"] not in DRIFT_TESTS:
        raise ValueError(f"config.json: drift_test must be one of {DRIFT_TESTS}, not {raw['drift_test']!r}")
    _check_ranges(raw)
    values = {k: project_dir / v if k in _PATH_KEYS else v for k, v in raw.items()}
    values["input_folder_path"] = _input_folder(project_dir, raw["input_folder_path"])
    for key in ("features", "id_columns"):
        values[key] = tuple(values[key])
    url = normalize_database_url(database_url) if database_url else None
    return Config(
        project_dir=project_dir,
        database_url=url or database_url_from_env(project_dir, values["sqlite_path"]),
        **values,
        alert_webhook_url=env_setting(project_dir, "ALERT_WEBHOOK_URL"),
    )


def _input_folder(project_dir: Path, value) -> Path | str | None:
    """A folder relative to the project, a bucket URL as written, or None for uploads only."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"config.json: input_folder_path must be a folder, an s3:// URL or null, not {value!r}")
    if "://" in value:
        if not value.startswith(BUCKET_SCHEMES) or not value.split("://", 1)[1].strip("/"):
            raise ValueError(f"config.json: input_folder_path must be a folder, an s3://bucket/prefix URL "
                             f"or null, not {value!r}")
        return value.rstrip("/")
    return project_dir / value


def _check_ranges(raw: dict) -> None:
    """Numbers whose meaning breaks outside a range fail loudly, naming the key."""
    if isinstance(raw["max_file_mb"], bool) or not isinstance(raw["max_file_mb"], int) or raw["max_file_mb"] < 1:
        raise ValueError(f"config.json: max_file_mb must be a whole number of MB, at least 1, not {raw['max_file_mb']!r}")
    for key in ("drift_confidence", "data_drift_confidence", "gate_confidence"):
        if not isinstance(raw[key], int | float) or not 0.5 <= raw[key] < 1:
            raise ValueError(f"config.json: {key} must be a number from 0.5 to below 1, not {raw[key]!r}")
    if not isinstance(raw["gate_margin"], int | float) or not 0 <= raw["gate_margin"] < 1:
        raise ValueError(f"config.json: gate_margin must be a number from 0 to below 1, not {raw['gate_margin']!r}")
    if not isinstance(raw["data_drift_retrains"], bool):
        raise ValueError(f"config.json: data_drift_retrains must be true or false, not {raw['data_drift_retrains']!r}")


def setup_logging(level: int = 20) -> None:
    """Log to stderr once per entry point; cron's wrapper appends it to the log file. Each line
    names its process (name[pid], as syslog does): gunicorn's workers share one log."""
    import logging

    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")


def describe_error(exc: BaseException) -> str:
    """One line saying what went wrong, for runs.message (which the API serves) and for stderr:
    no server path and no SQL in it (the log keeps the details)."""
    import sqlalchemy.exc

    if isinstance(exc, OSError) and exc.filename:
        text = f"{exc.strerror or exc}: {os.path.basename(exc.filename)}"
    elif isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]  # the driver's words, not the SQL
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:2000]


def expected_errors() -> tuple[type[BaseException], ...]:
    """What a script can meet without a bug: bad input or config, files, model files, no terminal to
    answer, and a database that is unreachable, damaged or refuses (or a DATABASE_URL that is not one)."""
    import sqlalchemy.exc

    return (LookupError, ValueError, OSError, RuntimeError, EOFError,
            sqlalchemy.exc.DBAPIError, sqlalchemy.exc.ArgumentError)


def exit_now(code: int) -> None:
    """End a script that has finished: flush its logs and output, then exit without the interpreter's
    teardown, which frees a large tick's objects one at a time (half a second after a 1,000,000-row
    tick) when everything is already written, fsynced and committed."""
    import logging
    import os
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_script(main) -> int:
    """Run a script's main(), the one way every script ends: an expected failure is one line on
    stderr and exit code 1 (a recorded run is already marked failed); a bug raises, so its
    traceback reaches the log."""
    import logging
    import sys

    try:
        return main()
    except expected_errors() as exc:
        setup_logging()  # main() may have failed before it set logging up
        logging.getLogger(Path(sys.argv[0]).name).error("%s", describe_error(exc))
        return 1
