"""Rows of the data sets: their two 64-bit hashes (the row's key, and the hash that chooses its side),
their statistics, and their text: the CSV line each row is stored as and exported as.

A row is held out (testdata) or trained on (finaldata) by a hash of its values, so it always lands on
the same side. Rows are equal when their hashes are: ids as text (a missing id apart from any text),
numbers as floats.
"""

import io
import logging

from riskmonitor.config import Config

log = logging.getLogger(__name__)
SECOND_KEY = b"drat-row-hash-2!"  # the key of a row's second hash
HASH_BLOCK_ROWS = 65_536  # rows hashed at a time
QUOTED = r'[",\r\n]'  # what makes a CSV value need quotes


def parse(data: bytes, config: Config):
    """CSV bytes of data-set rows (a header, then lines as `lines` writes them) as a pyarrow Table; ids as text."""
    from riskmonitor.data.validation import arrow_table

    if data.rstrip(b"\r\n").count(b"\n") == 0:
        return empty_table(config)  # a header alone
    table = arrow_table(io.BytesIO(data), len(data), config.id_columns, config.columns, newlines=True)
    if table is None:  # what pyarrow cannot read (an export edited by hand): pandas reads it
        import pandas as pd

        table = pd.read_csv(io.BytesIO(data), dtype={c: "str" for c in config.id_columns}, keep_default_na=False,
                            na_values=[""])
    return as_table(table, config)


def header(config: Config) -> str:
    """The CSV header of the data sets: the columns every stored line follows."""
    return ",".join(_quoted(name) for name in config.columns)


def _quoted(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in '",\r\n') else text


def lines(table, config: Config):
    """Each row's CSV line (a pyarrow string array, no line end): ids quoted when they need it, a missing
    value empty, numbers as pyarrow writes them (shortest text that reads back the same float)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = as_table(table, config)
    cells = []
    for name in config.columns:
        column = table.column(name)
        if name in config.id_columns:
            needs = pc.match_substring_regex(column, QUOTED)
            quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
            text = pc.if_else(needs, quoted, column)
        else:
            text = pc.cast(column, pa.string())
            if pa.types.is_floating(column.type):
                text = pc.if_else(pc.is_nan(column), pa.scalar(None, pa.string()), text)
        cells.append(pc.fill_null(text, ""))
    return pc.binary_join_element_wise(*cells, ",").combine_chunks() if cells else pa.array([], pa.string())


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


def first_seen(hashes):
    """True for the first row of each distinct hash pair (an (n, 2) array): only rows that share their
    first hash with another are compared whole."""
    import numpy as np

    first = np.sort(hashes[:, 0])
    fresh = np.ones(len(hashes), dtype=bool)
    repeated = np.unique(first[1:][first[1:] == first[:-1]])
    if len(repeated):  # in their order: the first of equal pairs stays
        tied = np.flatnonzero(_member(hashes[:, 0], repeated))
        _, firsts = np.unique(hashes[tied], axis=0, return_index=True)
        fresh[tied] = False
        fresh[tied[firsts]] = True
    return fresh


def _member(values, sorted_values):
    """True for each of `values` found in `sorted_values` (a sorted array)."""
    import numpy as np

    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    at = np.searchsorted(sorted_values, values)
    at[at == len(sorted_values)] = 0
    return sorted_values[at] == values


# --- the index: rows, sizes and statistics of the data sets, valid while their sizes are its own ---


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
