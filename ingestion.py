"""Find new CSV files by content hash, validate them, and merge their rows into the data sets.

Bad files are quarantined: recorded with the reason, never moved, changed or deleted.
"""

import io
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import db
import storage
from config import Config, run_script

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewFile:
    name: str
    path: Path
    sha256: str
    size: int | None
    mtime_ns: int | None


@dataclass
class IngestResult:
    new_data: object  # pandas.DataFrame of the valid rows of this tick's files
    records: list[dict] = field(default_factory=list)  # ingested_files rows to store
    finaldata: object = None  # finaldata.csv after the merge (None: nothing merged, read it if needed)

    @property
    def quarantined(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "quarantined"]


def find_new_files(config: Config, known: set[str], stat_cache: dict) -> list[NewFile]:
    """CSV files in the input folder whose content has not been seen, whatever their name."""
    found, seen = [], set(known)
    folder = config.input_folder_path
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or path.suffix.lower() != ".csv":
            continue  # only CSV is watched; hidden files are partial uploads by convention
        size = mtime_ns = None
        try:
            if path.is_dir():  # no content to hash: its name stands in, so it is reported once
                sha = storage.sha256_bytes(b"directory\0" + path.name.encode())
            else:
                stat = path.stat()
                size, mtime_ns = stat.st_size, stat.st_mtime_ns
                sha = stat_cache.get((path.name, size, mtime_ns)) or storage.sha256_file(path)
        except OSError as exc:  # vanished or unreadable right now: try again next tick
            log.warning("skipping %s this tick: %s", path.name, exc.strerror or exc)
            continue
        if sha not in seen:
            seen.add(sha)
            found.append(NewFile(path.name, path, sha, size, mtime_ns))
    return found


def read_valid_rows(data: bytes, config: Config):
    """Parse and validate one file's bytes: (frame, None) when usable, else (None, reason)."""
    import pandas as pd

    if not data.strip():
        return None, "empty file"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, "not UTF-8 text (binary data or another encoding)"
    if "\0" in text:
        return None, "not a text file (contains NUL bytes)"
    try:
        frame = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return None, f"not a valid CSV file: {str(exc).strip().splitlines()[0]}"
    missing = [c for c in config.columns if c not in frame.columns]
    if missing:
        return None, f"missing column(s): {', '.join(missing)}"
    if frame.empty:
        return None, "no data rows (header only)"
    frame = frame[list(config.columns)]
    for column in (*config.features, config.label):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = (numbers.isna() & frame[column].notna()) | numbers.isin([float("inf"), float("-inf")])
        if bad.any():
            row = int(bad.idxmax())
            return None, f"non-numeric or infinite value '{frame[column][row]}' in column {column} (line {row + 2})"
        frame[column] = numbers
    labels = frame[config.label]
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(bad.idxmax())
        found = "a missing value" if pd.isna(labels[row]) else f"{labels[row]:g}"
        return None, f"label {config.label} must be 0 or 1, found {found} (line {row + 2})"
    frame[config.label] = labels.astype("int64")
    for column in config.id_columns:
        frame[column] = frame[column].astype("string")
    return frame, None


def held_out(frame, config: Config):
    """True for rows held out as test data, chosen by a hash of the row's values, so a row
    always lands on the same side: re-ingesting a file never moves or duplicates rows."""
    import pandas as pd

    key = frame[list(config.columns)].astype({c: "float64" for c in config.features})
    key = key.astype({c: "str" for c in config.id_columns})
    buckets = pd.util.hash_pandas_object(key, index=False).to_numpy() % 10_000
    return buckets < round(config.test_fraction * 10_000)


def read_dataset(path: Path, config: Config):
    """finaldata.csv or testdata.csv as written by merge_rows (empty frame when absent)."""
    import pandas as pd

    if not path.exists():
        return pd.DataFrame(columns=list(config.columns))
    return pd.read_csv(path, dtype={c: "str" for c in config.id_columns})


def merge_rows(new_data, config: Config):
    """Add rows to finaldata.csv / testdata.csv without exact duplicates; return both as merged."""
    import pandas as pd

    test = held_out(new_data, config)
    merged = []
    for path, part in ((config.finaldata_csv, new_data[~test]), (config.testdata_csv, new_data[test])):
        old = read_dataset(path, config)
        # An absent file reads as an untyped empty frame: concatenating it would make every column object.
        frame = (pd.concat([old, part], ignore_index=True) if len(old) else part).drop_duplicates(ignore_index=True)
        storage.replace_atomically(path, lambda handle, frame=frame: frame.to_csv(handle, index=False))
        merged.append(frame)
    return merged[0], merged[1]


def read_new_file(new_file: NewFile, config: Config):
    """(frame or None, ingested_files record) for one new file."""
    if new_file.path.is_dir():
        frame, error, sha, size, mtime_ns = None, "a directory, not a file", new_file.sha256, None, None
    else:
        with open(new_file.path, "rb") as handle:  # hash exactly the bytes that are parsed
            stat = os.fstat(handle.fileno())
            data = handle.read()
        frame, error = read_valid_rows(data, config)
        sha, size, mtime_ns = storage.sha256_bytes(data), stat.st_size, stat.st_mtime_ns
    if error:
        log.warning("quarantined %s: %s", new_file.name, error)
    record = {"file": new_file.name, "sha256": sha, "size": size, "mtime_ns": mtime_ns,
              "rows": 0 if frame is None else len(frame),
              "status": "quarantined" if error else "ingested", "error": error}
    return frame, record


def ingest_files(config: Config, new_files: list[NewFile]) -> IngestResult:
    """Read and validate the new files and merge their valid rows into the data sets."""
    import pandas as pd

    frames, records = [], []
    for new_file in new_files:
        frame, record = read_new_file(new_file, config)
        records.append(record)
        if frame is not None:
            frames.append(frame)
            log.info("read %s: %d rows", new_file.name, len(frame))
    if not frames:
        return IngestResult(pd.DataFrame(columns=list(config.columns)), records)
    new_data = pd.concat(frames, ignore_index=True).drop_duplicates(ignore_index=True)
    finaldata, _ = merge_rows(new_data, config)
    return IngestResult(new_data, records, finaldata)


def summary(result: IngestResult) -> str:
    ingested = len(result.records) - len(result.quarantined)
    text = f"{ingested} file(s) ingested, {len(result.new_data)} new row(s)"
    if result.quarantined:
        text += "; quarantined: " + "; ".join(f"{r['file']} ({r['error']})" for r in result.quarantined)
    return text


def main() -> int:
    """Ingest the new files of the input folder alone, as a run of its own."""
    from config import load_config, setup_logging

    setup_logging()
    config = load_config()
    engine = db.make_engine(config.database_url)
    with storage.pipeline_lock(config.project_dir, wait=True, engine=engine), db.recorded_run(engine, "ingestion.py") as run_hex:
        with engine.connect() as conn:
            new_files = find_new_files(config, *db.known_files(conn))
        result = ingest_files(config, new_files)
        with engine.begin() as conn:
            db.record_files(conn, run_hex, result.records)
            db.finish_run(conn, run_hex, "done" if new_files else "no_new_data", summary(result))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
