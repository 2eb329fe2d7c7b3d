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
import os
from dataclasses import dataclass, field
from pathlib import Path

from riskmonitor.config import Config
from riskmonitor.store import storage

log = logging.getLogger(__name__)
REBUILD = "python ingestion.py --rebuild"
SECOND_KEY = b"drat-row-hash-2!"  # the key of a row's second hash
HASH_BLOCK_ROWS = 65_536  # rows hashed at a time
HASH_CHUNK_ROWS = 500_000  # stored row hashes searched at a time (8 MB): a tick's memory does not grow with history


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


def read_dataset(path: Path, config: Config, since: int = 0):
    """finaldata.csv or testdata.csv as written (empty frame when absent); ids are text as written.
    `since`: a byte offset at the start of a row, to read only the rows appended after it."""
    import io

    import pandas as pd

    table, data = _arrow_dataset(path, config, since)
    if table is not None:  # pyarrow reads what we wrote; pandas what it cannot (an edited file, no rows)
        return table.to_pandas()
    if data is None:
        return pd.DataFrame(columns=list(config.columns))
    return pd.read_csv(io.BytesIO(data), dtype={c: "str" for c in config.id_columns}, keep_default_na=False,
                       na_values=[""])


def read_table(path: Path, config: Config):
    """read_dataset as a pyarrow Table of the data-set columns (as_table): pandas reads only what pyarrow cannot."""
    table, data = _arrow_dataset(path, config)
    if table is None and (data is None or data.rstrip(b"\r\n").count(b"\n") == 0):
        return empty_table(config)  # absent, or a header alone
    return as_table(table if table is not None else read_dataset(path, config), config)


def _arrow_dataset(path: Path, config: Config, since: int = 0):
    """(the data set read by pyarrow or None, its bytes or None when the file is absent)."""
    import io

    from riskmonitor.data.validation import arrow_table

    if not path.exists():
        return None, None
    with open(path, "rb") as handle:
        header = handle.readline()
        handle.seek(since or len(header))
        data = header + handle.read()
    return arrow_table(io.BytesIO(data), len(data), config.id_columns, config.columns, newlines=True), data


def held_out_since(config: Config, mark: dict | None):
    """(held-out rows appended after `mark`, whether only those were read, a mark of testdata.csv now).
    A mark names the data sets' epoch and testdata.csv's size: rows are only appended within an epoch,
    and a rebuild starts a new one, so a mark of another epoch (or none) reads every held-out row."""
    index = read_index(config)
    epoch = index.get("epoch") if index else None
    now = {"epoch": epoch, "bytes": index["sizes"]["testdata"]} if epoch else None
    if now and mark and mark.get("epoch") == epoch and 0 < mark["bytes"] <= now["bytes"]:
        return read_dataset(config.testdata_csv, config, since=mark["bytes"]), True, now
    return read_dataset(config.testdata_csv, config), False, now


def held_out(rows, config: Config, split=None):
    """True for rows held out as test data, chosen by a hash of the row's values, so a row
    always lands on the same side: re-ingesting a file never moves or duplicates rows.
    `rows`: a pyarrow Table or pandas DataFrame; `split`: their split_hash, when it was computed already."""
    buckets = (split_hash(rows, config) if split is None else split) % 10_000
    return buckets < round(config.test_fraction * 10_000)


def as_table(rows, config: Config):
    """The data-set columns of rows (a pyarrow Table, or a pandas DataFrame) as a pyarrow Table: ids as
    text, the other columns as they are."""
    import pyarrow as pa

    if not isinstance(rows, pa.Table):
        frame = rows[list(config.columns)].astype({c: "str" for c in config.id_columns})
        rows = pa.Table.from_pandas(frame, preserve_index=False)
    return pa.Table.from_arrays([rows.column(c).cast(pa.string()) if c in config.id_columns else rows.column(c)
                                 for c in config.columns], names=list(config.columns))


def empty_table(config: Config):
    """A data-set table without rows."""
    import pyarrow as pa

    return as_table(pa.Table.from_arrays([pa.nulls(0, pa.float64() if c in config.features else pa.int64())
                                          for c in config.columns], names=list(config.columns)), config)


def split_hash(rows, config: Config, floats=None):
    """The 64-bit hash of each row that chooses its side: pandas' hash_pandas_object (index=False) of the
    data-set columns with features as floats, ids as text (missing apart from any text), the label as
    read. `floats`: _float_hashes(rows), when they were computed already."""
    from riskmonitor.data import rowhash

    table = as_table(rows, config)
    floats = floats or _float_hashes(table, config)
    return rowhash.combine([rowhash.text(table.column(c)) if c in config.id_columns else
                            floats[c] if c in config.features else rowhash.numbers(rowhash.to_numpy(table.column(c)))
                            for c in config.columns])


def _float_hashes(table, config: Config) -> dict:
    """{column: hash of its values as float64 (pd.util.hash_array)} of every column but the ids."""
    import pyarrow as pa

    from riskmonitor.data import rowhash

    return {c: rowhash.numbers(rowhash.to_numpy(table.column(c).cast(pa.float64())))
            for c in config.columns if c not in config.id_columns}


def check_present(config: Config, history: History) -> None:
    """Cheap check for every tick (no pandas): rows were ingested, so both data sets exist."""
    if history.rows <= 0:
        return
    for path in (config.finaldata_csv, config.testdata_csv):
        if not path.is_file():
            raise DataSetsLost(f"{_name(path, config)} is missing: the database records {history.rows} row(s) "
                               f"from {history.files} ingested file(s); rebuild the data sets with `{REBUILD}`")


def prepare(config: Config, history: History) -> dict:
    """Cut the rows of a run that never committed, check the data sets against history, and return
    their index (rows, sizes, statistics; the row hashes beside them), without reading the data sets
    unless the index no longer describes them (then it is rebuilt from them, once)."""
    rollback(config, history)
    check_present(config, history)
    index = read_index(config)
    if index is None:
        index = rebuild_index(config)
    rows = index["rows"]["finaldata"] + index["rows"]["testdata"]
    if rows < history.rows:
        raise DataSetsLost(f"the data sets hold {rows} row(s), fewer than the {history.rows} "
                           f"the database records from {history.files} ingested file(s); rebuild them with "
                           f"`{REBUILD}`")
    return index


def rollback(config: Config, history: History) -> None:
    """Cut the bytes a run appended if it never committed (its journal names it), then drop the journal."""
    path = journal_path(config)
    if not path.exists():
        return
    journal = json.loads(path.read_text())
    if journal["hex"] not in history.runs:
        for target, size in _journaled(config, journal):
            if target.exists() and target.stat().st_size > size:
                log.warning("%s: cutting %d byte(s) appended by run %s, which never committed",
                            target.name, target.stat().st_size - size, journal["hex"])
                os.truncate(target, size) if size else target.unlink()  # it did not exist before the run
    path.unlink()


def _journaled(config: Config, journal: dict) -> list[tuple[Path, int]]:
    """(file, size before the run) for each file a run appends to."""
    return [(config.finaldata_csv, journal["finaldata_bytes"]), (config.testdata_csv, journal["testdata_bytes"]),
            (hashes_path(config), journal["hashes_bytes"])]


def row_hashes(rows, config: Config):
    """Two 64-bit hashes of each row's values, computed differently (an (n, 2) uint64 array): rows are equal
    when their hashes are (ids as text, a missing id apart from any text; numbers as floats)."""
    import numpy as np

    from riskmonitor.data import rowhash

    def pair(part):
        floats = _float_hashes(part, config)
        first = split_hash(part, config, floats)  # the held-out split's own hash: computed once for both uses
        # No id is empty (an empty cell is a missing id): "" stands for a missing one. Numbers are hashed
        # without the key: the second hash also combines the columns in reverse order.
        second = rowhash.combine([rowhash.text(part.column(c), SECOND_KEY, missing_as_empty=True)
                                  if c in config.id_columns else floats[c] for c in reversed(config.columns)])
        return np.stack([first, second], axis=1)

    # Blocks of rows small enough that numpy's arrays stay in the cache, on two threads (numpy works
    # outside the GIL).
    table = as_table(rows, config)
    return np.concatenate(in_threads(pair, _slices(table, max(1, table.num_rows // HASH_BLOCK_ROWS))))


def stored_hashes(config: Config):
    """The hashes of every stored row, in the order they were appended."""
    import numpy as np

    path = hashes_path(config)
    return np.fromfile(path, dtype=np.uint64).reshape(-1, 2) if path.exists() else np.empty((0, 2), np.uint64)


def new_rows(tables: list, stored, config: Config):
    """(rows to append, rows each table adds, their hashes): a row counts for the first table (or
    DataFrame) that has it, and only if the data sets do not hold it already (`stored`: their row
    hashes, an array or chunks of it). The rows to append are a pyarrow Table."""
    import numpy as np
    import pyarrow as pa

    from riskmonitor.data import rowhash

    tables = [as_table(t, config) for t in tables]
    new = pa.concat_tables(tables, promote_options="permissive") if tables else empty_table(config)  # int, float: float
    owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    hashes = row_hashes(new, config)
    first = np.sort(hashes[:, 0])  # the first halves in order: both searches below use them
    fresh = _first_seen(hashes, first) & ~_stored(hashes, first, stored)
    counts = np.bincount(owner[fresh], minlength=len(tables))
    return new.filter(rowhash.mask(fresh)), [int(n) for n in counts], hashes[fresh]


def _first_seen(hashes, first):
    """True for the first row of each distinct hash pair (`first`: their first halves, sorted): only
    rows that share their first hash with another are compared whole."""
    import numpy as np

    fresh = np.ones(len(hashes), dtype=bool)
    repeated = np.unique(first[1:][first[1:] == first[:-1]])
    if len(repeated):  # in their order: the first of equal pairs stays
        tied = np.flatnonzero(_member(hashes[:, 0], repeated))
        _, firsts = np.unique(hashes[tied], axis=0, return_index=True)
        fresh[tied] = False
        fresh[tied[firsts]] = True
    return fresh


def _stored(hashes, new_first, stored):
    """True for each row whose hash pair is among the stored ones (`new_first`: the rows' first halves,
    sorted): `stored` is an array of them or chunks of it (hash_chunks), searched by their first half,
    so that memory stays that of a chunk; only rows whose first half is stored are compared whole."""
    import numpy as np

    found = np.zeros(len(hashes), dtype=bool)
    for chunk in [stored] if isinstance(stored, np.ndarray) else stored:
        first = np.sort(chunk[:, 0])
        shared = first[_member(first, new_first)]  # first halves both have (sorted: a quick search)
        if len(shared):
            near = chunk[_member(chunk[:, 0], shared)]  # stored rows a new row may be
            maybe = np.flatnonzero(_member(hashes[:, 0], shared))
            found[maybe] |= np.isin(_pairs(hashes[maybe]), _pairs(near))
    return found


def _member(values, sorted_values):
    """True for each of `values` found in `sorted_values` (a sorted array)."""
    import numpy as np

    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_values, values)
    at[at == len(sorted_values)] = 0
    return sorted_values[at] == values


def _pairs(hashes):
    """Each row's hash pair as one 16-byte value (compared as bytes)."""
    import numpy as np

    return np.ascontiguousarray(hashes).view(np.dtype((np.void, 16))).ravel()


def hash_chunks(config: Config, rows: int = HASH_CHUNK_ROWS):
    """The stored row hashes, a chunk of at most `rows` rows at a time."""
    import numpy as np

    path = hashes_path(config)
    if not path.exists():
        return
    with open(path, "rb") as handle:
        while len(chunk := np.fromfile(handle, dtype=np.uint64, count=2 * rows)):
            yield chunk.reshape(-1, 2)


def append(config: Config, index: dict, added, hashes, run_hex: str = "") -> dict:
    """Append rows (a pyarrow Table, as new_rows gives them) to both data sets in place (each row on its
    hashed side) and their hashes beside them; return the index that describes them now."""
    from riskmonitor.data import rowhash

    if run_hex:  # written first: if this run never commits, the next ingestion cuts what follows
        journal = {"hex": run_hex, **{f"{k}_bytes": v for k, v in _sizes(config).items()}}
        storage.replace_atomically(journal_path(config), lambda handle: handle.write(json.dumps(journal).encode()))
    side = held_out(added, config, hashes[:, 0])
    for path, rows in ((config.finaldata_csv, ~side), (config.testdata_csv, side)):
        _append_csv(path, added.filter(rowhash.mask(rows)))
    with open(hashes_path(config), "ab") as handle:
        handle.write(hashes.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    index = {"rows": {"finaldata": index["rows"]["finaldata"] + int((~side).sum()),
                      "testdata": index["rows"]["testdata"] + int(side.sum())},
             "stats": merge_stats(index["stats"], column_stats(added, config, ~side)), "epoch": _epoch(index)}
    return write_index(config, index)


def merge_rows(new_data, config: Config):
    """Add rows to finaldata.csv / testdata.csv without exact duplicates; return both as merged."""
    index = prepare(config, History())
    added, _, hashes = new_rows([new_data], hash_chunks(config), config)
    append(config, index, added, hashes)
    return read_dataset(config.finaldata_csv, config), read_dataset(config.testdata_csv, config)


def reset(config: Config) -> None:
    """Remove the data sets, their hashes and index (a rebuild appends everything again)."""
    for path in (config.finaldata_csv, config.testdata_csv, hashes_path(config), index_path(config), journal_path(config)):
        path.unlink(missing_ok=True)


# --- the index: rows, sizes and statistics of the data sets, valid while their sizes are its own ---

def hashes_path(config: Config) -> Path:
    return config.output_folder_path / ".row_hashes.u64"


def index_path(config: Config) -> Path:
    return config.output_folder_path / ".datasets_index.json"


def _sizes(config: Config) -> dict[str, int]:
    paths = {"finaldata": config.finaldata_csv, "testdata": config.testdata_csv, "hashes": hashes_path(config)}
    return {name: path.stat().st_size if path.exists() else 0 for name, path in paths.items()}


def read_index(config: Config) -> dict | None:
    """The index, if it describes the data sets as they are (their sizes are the ones it recorded)."""
    path = index_path(config)
    if not path.exists():
        return None
    index = json.loads(path.read_text())
    rows = index["rows"]["finaldata"] + index["rows"]["testdata"]
    if index.get("sizes") != _sizes(config) or index["sizes"]["hashes"] != 16 * rows:
        log.warning("the data sets changed since their index was written: rebuilding it from them")
        return None
    return index


def _epoch(index: dict | None = None) -> str:
    """The index's epoch: rows are only appended to the data sets within one (a rebuild starts a new one)."""
    return (index or {}).get("epoch") or os.urandom(8).hex()


def write_index(config: Config, index: dict) -> dict:
    index = {**index, "sizes": _sizes(config)}
    storage.replace_atomically(index_path(config), lambda handle: handle.write(json.dumps(index).encode()))
    return index


def rebuild_index(config: Config) -> dict:
    """Read the data sets whole once: their row hashes and statistics, written beside them."""
    final, test = read_table(config.finaldata_csv, config), read_table(config.testdata_csv, config)
    hashes = [row_hashes(table, config) for table in (final, test) if len(table)]
    import numpy as np

    data = np.concatenate(hashes) if hashes else np.empty((0, 2), np.uint64)
    if config.output_folder_path.is_dir() or len(data):
        storage.replace_atomically(hashes_path(config), lambda handle: handle.write(data.tobytes()))
    index = {"rows": {"finaldata": len(final), "testdata": len(test)}, "stats": column_stats(final, config),
             "epoch": _epoch()}
    return write_index(config, index) if config.output_folder_path.is_dir() else {**index, "sizes": _sizes(config)}


def column_stats(table, config: Config, rows=None) -> dict:
    """Count, mean and sum of squared deviations (M2) of each feature, and missing values of each column
    (of a data-set table's rows where `rows`, a boolean mask, is true; of all without it)."""
    import numpy as np
    import pyarrow as pa

    from riskmonitor.data import rowhash

    take = (lambda values: values) if rows is None else (lambda values: values[rows])
    stats = {"rows": len(table) if rows is None else int(rows.sum()), "missing": {}, "features": {}}
    for column in config.columns:
        values = table.column(column)
        if column in config.features:
            values = take(rowhash.to_numpy(values.cast(pa.float64())))
            missing = np.isnan(values)
            values = values[~missing]
            mean = float(values.mean()) if len(values) else 0.0
            stats["features"][column] = {"n": len(values), "mean": mean, "m2": float(((values - mean) ** 2).sum())}
        elif values.null_count or pa.types.is_floating(values.type):
            missing = take(rowhash.missing(values))
        else:
            missing = ()  # neither null nor NaN can be in it
        stats["missing"][column] = int(np.count_nonzero(missing))
    return stats


def merge_stats(old: dict, new: dict) -> dict:
    """Statistics of two parts together (Chan et al.'s parallel update: exact, numerically stable)."""
    merged = {"rows": old["rows"] + new["rows"], "missing": {c: old["missing"][c] + new["missing"][c] for c in old["missing"]},
              "features": {}}
    for feature, a in old["features"].items():
        b = new["features"][feature]
        n = a["n"] + b["n"]
        delta = b["mean"] - a["mean"]
        mean = a["mean"] + delta * b["n"] / n if n else 0.0
        m2 = a["m2"] + b["m2"] + delta * delta * a["n"] * b["n"] / n if n else 0.0
        merged["features"][feature] = {"n": n, "mean": mean, "m2": m2}
    return merged


def _append_csv(path: Path, part) -> None:
    """Append rows (a pyarrow Table) to a CSV (its header first if it is new), flushed to disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not len(part) and not new:
        return
    with open(path, "ab") as handle:
        handle.write(csv_bytes(part, header=new))
        handle.flush()
        os.fsync(handle.fileno())


def csv_bytes(table, header: bool) -> bytes:
    """Rows of a pyarrow Table as CSV: by pyarrow's writer, quoting nothing, or by pandas when a value
    (or a column name) needs quotes."""
    import pyarrow as pa
    import pyarrow.csv as csv

    names = ",".join(table.column_names)
    if not any(c in names for c in '"\r\n') and len(names.split(",")) == table.num_columns:
        def rows(part) -> bytes:
            buffer = pa.BufferOutputStream()
            csv.write_csv(part, buffer, csv.WriteOptions(include_header=False, quoting_style="none"))
            return buffer.getvalue().to_pybytes()

        try:  # in parts on two threads: pyarrow's writer uses one core
            return (f"{names}\n".encode() if header else b"") + b"".join(in_threads(rows, _slices(table, 4)))
        except pa.ArrowInvalid:  # a comma, quote or line break in a value
            pass
    return table.to_pandas().to_csv(index=False, header=header, lineterminator="\n").encode()


def _slices(table, parts: int) -> list:
    """A table cut into `parts` consecutive slices (one for a small table)."""
    parts = max(1, min(parts, table.num_rows // 10_000))
    bounds = [table.num_rows * k // parts for k in range(parts + 1)]
    return [table.slice(lo, hi - lo) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def in_threads(work, items: list, threads: int = 2) -> list:
    """[work(item) for item in items] on `threads` threads, in order: for work that releases the GIL
    (pyarrow's CSV reader and writer, numpy on large arrays). An exception is raised as in the loop."""
    if len(items) < 2:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


def _name(path: Path, config: Config) -> str:
    """A data set's name relative to the project (messages show no server path)."""
    try:
        return path.relative_to(config.project_dir).as_posix()
    except ValueError:
        return path.name
