"""The data sets ingestion builds: finaldata.csv (training rows) and testdata.csv (held-out rows).

Rows are only ever appended, and each row lands on one side by a hash of its values. The
database records how many rows each ingested file added (ingested_files.rows), so their sum is
the length of the two data sets together: a tick that finds them missing or shorter stops
instead of training on what is left (`python ingestion.py --rebuild` rebuilds them). Before
appending, a journal notes their lengths under the run's hex; if that run never commits (a
killed or failed tick), the next ingestion cuts the rows it appended, so its files are read
again and their rows counted again.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import storage
from config import Config

log = logging.getLogger(__name__)
REBUILD = "python ingestion.py --rebuild"


class DataSetsLost(RuntimeError):
    """The data sets hold fewer rows than the database says were ingested."""


@dataclass(frozen=True)
class History:
    """What the database says was ingested: rows added, files, and the runs that recorded them."""

    rows: int = 0
    files: int = 0
    runs: frozenset[str] = field(default_factory=frozenset)
    run_hex: str = ""  # the run now ingesting: its journal is cut if it never commits


def journal_path(config: Config) -> Path:
    return config.output_folder_path / ".append_journal.json"


def read_dataset(path: Path, config: Config):
    """finaldata.csv or testdata.csv as written (empty frame when absent); ids are text as written."""
    import pandas as pd

    if not path.exists():
        return pd.DataFrame(columns=list(config.columns))
    return pd.read_csv(path, dtype={c: "str" for c in config.id_columns}, keep_default_na=False, na_values=[""])


def held_out(frame, config: Config):
    """True for rows held out as test data, chosen by a hash of the row's values, so a row
    always lands on the same side: re-ingesting a file never moves or duplicates rows."""
    import pandas as pd

    key = frame[list(config.columns)].astype({c: "float64" for c in config.features})
    key = key.astype({c: "str" for c in config.id_columns})
    buckets = pd.util.hash_pandas_object(key, index=False).to_numpy() % 10_000
    return buckets < round(config.test_fraction * 10_000)


def check_present(config: Config, history: History) -> None:
    """Cheap check for every tick (no pandas): rows were ingested, so both data sets exist."""
    if history.rows <= 0:
        return
    for path in (config.finaldata_csv, config.testdata_csv):
        if not path.is_file():
            raise DataSetsLost(f"{_name(path, config)} is missing: the database records {history.rows} row(s) "
                               f"from {history.files} ingested file(s); rebuild the data sets with `{REBUILD}`")


def load(config: Config, history: History):
    """(finaldata, testdata) with the rows of a run that never committed cut, checked against history."""
    rollback(config, history)
    check_present(config, history)
    final, test = read_dataset(config.finaldata_csv, config), read_dataset(config.testdata_csv, config)
    if len(final) + len(test) < history.rows:
        raise DataSetsLost(f"the data sets hold {len(final) + len(test)} row(s), fewer than the {history.rows} "
                           f"the database records from {history.files} ingested file(s); rebuild them with "
                           f"`{REBUILD}`")
    return final, test


def rollback(config: Config, history: History) -> None:
    """Cut the rows a run appended if it never committed (its journal names it), then drop the journal."""
    path = journal_path(config)
    if not path.exists():
        return
    journal = json.loads(path.read_text())
    if journal["hex"] not in history.runs:
        for name, rows in (("finaldata", journal["finaldata"]), ("testdata", journal["testdata"])):
            target = getattr(config, f"{name}_csv")
            frame = read_dataset(target, config)
            if len(frame) > rows:
                log.warning("%s: cutting %d row(s) appended by run %s, which never committed",
                            target.name, len(frame) - rows, journal["hex"])
                _write(target, frame.head(rows))
    path.unlink()


def new_rows(frames: list, final, test, config: Config):
    """(rows to append, rows each frame adds): a row counts for the first frame that has it, and only
    if the data sets do not hold it already (a copy with other line endings adds nothing)."""
    import numpy as np
    import pandas as pd

    columns = list(config.columns)
    new = pd.concat([f[columns] for f in frames], ignore_index=True)
    owner = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    stored = [f[columns] for f in (final, test) if len(f)]
    combined = pd.concat([*stored, new], ignore_index=True) if stored else new
    fresh = ~combined.duplicated().to_numpy()[len(combined) - len(new):]
    counts = np.bincount(owner[fresh], minlength=len(frames))
    return new[fresh].reset_index(drop=True), [int(n) for n in counts]


def append(config: Config, final, test, added, run_hex: str = ""):
    """Append rows to both data sets (each row on its hashed side); return both as written."""
    import pandas as pd

    if run_hex:  # written first: if this run never commits, the next ingestion cuts what follows
        journal = {"hex": run_hex, "finaldata": len(final), "testdata": len(test)}
        storage.replace_atomically(journal_path(config), lambda handle: handle.write(json.dumps(journal).encode()))
    side = held_out(added, config)
    merged = []
    for path, old, part in ((config.finaldata_csv, final, added[~side]), (config.testdata_csv, test, added[side])):
        # An absent file reads as an untyped empty frame: concatenating it would make every column object.
        frame = pd.concat([old, part], ignore_index=True) if len(old) else part.reset_index(drop=True)
        _write(path, frame)
        merged.append(frame)
    return merged[0], merged[1]


def merge_rows(new_data, config: Config):
    """Add rows to finaldata.csv / testdata.csv without exact duplicates; return both as merged."""
    final, test = read_dataset(config.finaldata_csv, config), read_dataset(config.testdata_csv, config)
    added, _ = new_rows([new_data], final, test, config)
    return append(config, final, test, added)


def _write(path: Path, frame) -> None:
    storage.replace_atomically(path, lambda handle: frame.to_csv(handle, index=False))


def _name(path: Path, config: Config) -> str:
    """A data set's name relative to the project (messages show no server path)."""
    try:
        return path.relative_to(config.project_dir).as_posix()
    except ValueError:
        return path.name
