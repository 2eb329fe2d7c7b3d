"""One validator for rows of features and labels: ingestion (files) and the API (request bodies)
call it alike, and map its InvalidData to their own edge (a quarantine record, a 400 answer).

Every cell is read as text, exactly as written, and converted here: ids stay text (`00012`,
`NA`), numbers must be finite numbers (`True`/`False` are not numbers, in CSV as in JSON), and a
row with more fields than the header is an error, never a shifted row.
"""

import io
import re
from dataclasses import dataclass

# Cells of a feature column that mean "missing" (pandas' default markers): the model imputes them.
MISSING = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "<NA>",
                     "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN"})
EXCERPT_CHARS = 40  # an echoed value is cut to this: a 50 MB cell must not become a 50 MB message
REASON_CHARS = 500  # bound on any reason


class InvalidData(ValueError):
    """Rows that cannot be used, with a reason safe to show (no more than an excerpt of a value)."""

    def __init__(self, reason: str):
        super().__init__(reason[:REASON_CHARS])
        self.reason = reason[:REASON_CHARS]


@dataclass(frozen=True)
class Rows:
    """How messages name a row: a file's line (the header is line 1) or a JSON record."""

    word: str
    first: int  # the number of the first data row

    def name(self, index: int) -> str:
        return f"{self.word} {index + self.first}"


LINES, RECORDS = Rows("line", 2), Rows("record", 1)


def excerpt(value, limit: int = EXCERPT_CHARS) -> str:
    """A value as a short single-line text: long ones are cut and say how long they were."""
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def parse_csv(data: bytes, text=(), numeric=()):
    """CSV bytes (UTF-8, a BOM allowed) as a DataFrame named by the header: `text` columns as
    written (only an empty cell is missing), `numeric` columns typed by pandas with MISSING as
    missing (checked by numbers()); a row with more fields than the header is an error."""

    import pandas as pd

    if not data.strip():
        raise InvalidData("empty file")
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidData("not UTF-8 text (binary data or another encoding)") from None
    if "\0" in decoded:
        raise InvalidData("not a text file (contains NUL bytes)")
    missing = {c: [""] for c in text} | {c: sorted(MISSING) for c in numeric}
    try:
        frame = pd.read_csv(io.StringIO(decoded), dtype={c: str for c in text}, keep_default_na=False,
                            na_values=missing, skipinitialspace=True)
    except pd.errors.ParserError as exc:  # some rows longer than the header
        raise InvalidData(_longer_row(decoded) or _parser_reason(str(exc))) from None
    except (pd.errors.EmptyDataError, ValueError) as exc:
        raise InvalidData(f"not a valid CSV file: {excerpt(str(exc).strip().splitlines()[0], 200)}") from None
    if not isinstance(frame.index, pd.RangeIndex):  # every data row longer: pandas took the first fields as an index
        raise InvalidData(_longer_row(decoded) or "the rows have more fields than the header (a trailing comma?)")
    _check_header(decoded, [*text, *numeric])
    return frame


def _longer_row(decoded: str) -> str | None:
    """Where a row has more fields than the header (pandas' messages do not always say)."""
    import csv

    try:
        reader = csv.reader(io.StringIO(decoded, newline=""), skipinitialspace=True)
        header = next(reader, [])
        for row in reader:
            if len(row) > len(header):
                return f"line {reader.line_num} has {len(row)} fields, the header has {len(header)} (a trailing comma?)"
    except csv.Error:
        return None
    return None


def _check_header(decoded: str, columns) -> None:
    """A column named twice is ambiguous (pandas would rename the second to `name.1`)."""
    import csv

    try:
        header = next(csv.reader(io.StringIO(decoded, newline=""), skipinitialspace=True), [])
    except csv.Error as exc:  # pandas read what the csv module cannot (a stray carriage return): refuse it
        raise InvalidData(f"not a valid CSV file: {excerpt(str(exc), 200)}") from None
    for column in columns:
        if header.count(column) > 1:
            raise InvalidData(f"column {column} appears more than once")


def _parser_reason(message: str) -> str:
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        header, line, seen = fields.groups()
        return f"line {line} has {seen} fields, the header has {header} (a trailing comma?)"
    return f"not a valid CSV file: {excerpt(message.strip().splitlines()[0], 200)}"


def require_columns(frame, columns, what: str = "column(s)") -> None:
    """Every column present, and once: a second `exited` would leave it unclear which is meant."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidData(f"missing {what}: {', '.join(missing)}")
    names = list(frame.columns)
    for column in columns:
        if names.count(column) > 1:
            raise InvalidData(f"column {column} appears more than once")


def numbers(values, column: str, rows: Rows = LINES, echo: bool = True):
    """A column as float64: missing markers become NaN; anything else that is not a finite number
    (text, True/False, an infinite or overflowing value) raises InvalidData naming its row."""
    import numpy as np
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype):  # pandas reads a column of True/False as booleans
        shown = f" '{excerpt(values.iloc[0])}'" if echo else ""
        raise InvalidData(f"non-numeric or infinite value{shown} in column {column} ({rows.name(0)})")
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        text = values.astype("str").str.strip()  # JSON numbers arrive as Python numbers: str() is exact
        missing = values.isna() | text.isin(MISSING)
        converted = _to_float(text.where(~missing))
    else:  # typed by pandas already: ints stay ints
        missing, converted = values.isna(), values
    bad = (converted.isna() & ~missing) | np.isinf(converted)
    if bad.any():
        row = int(bad.to_numpy().argmax())
        shown = f" '{excerpt(values.iloc[row])}'" if echo else ""
        raise InvalidData(f"non-numeric or infinite value{shown} in column {column} ({rows.name(row)})")
    return converted


def _to_float(text):
    """Text cells as float64 (NaN where not a number); a number too large for pandas is infinite."""
    import pandas as pd

    try:
        return pd.to_numeric(text, errors="coerce")
    except (OverflowError, ValueError, TypeError):  # e.g. a 400-digit integer in an object column
        return text.map(_cell_float).astype("float64")


def _cell_float(cell) -> float:
    try:
        return float(cell)  # a huge integer string becomes inf, refused by the caller
    except (TypeError, ValueError):
        return float("nan")


def features(frame, names, rows: Rows = LINES, echo: bool = False):
    """The feature columns of parsed rows as finite floats (missing values allowed: imputed)."""
    import pandas as pd

    require_columns(frame, names, "feature column(s)")
    return pd.DataFrame({name: numbers(frame[name], name, rows, echo).astype("float64") for name in names},
                        index=frame.index)


def labelled_rows(data: bytes, ids, names, label: str):
    """A file's rows for ingestion, as a pyarrow Table: ids as text exactly as written (empty is
    missing), finite features (int64 or float64) and a 0/1 label; InvalidData says why the file cannot be used.

    A plainly well-formed file is read by pyarrow's CSV reader (plain_table), without pandas; anything
    else by the pandas path below, which says what is wrong. Both give the same rows (a property test
    checks it)."""
    import pyarrow as pa

    table = plain_table(data, ids, names, label)
    if table is None:
        table = pa.Table.from_pandas(checked_rows(data, ids, names, label), preserve_index=False)
    numeric = (pa.int64(), pa.float64())
    types = {c: pa.string() for c in ids} | {c: table.column(c).type if table.column(c).type in numeric else pa.float64()
                                             for c in names} | {label: pa.int64()}
    return pa.Table.from_arrays([table.column(c).cast(t) for c, t in types.items()], names=list(types))


def checked_rows(data: bytes, ids, names, label: str):
    """labelled_rows by pandas' parser and a check of every cell: the path that explains any refusal."""
    frame = parse_csv(data, text=ids, numeric=(*names, label))
    columns = [*ids, *names, label]
    require_columns(frame, columns)
    if frame.empty:
        raise InvalidData("no data rows (header only)")
    rows = frame[columns].copy()
    for name in (*names, label):
        rows[name] = numbers(frame[name], name, LINES, echo=True)
    labels = rows[label]
    bad = ~labels.isin([0, 1])
    if bad.any():
        row = int(bad.to_numpy().argmax())
        found = "a missing value" if labels.isna().iloc[row] else f"{labels.iloc[row]:.15g}"
        raise InvalidData(f"label {label} must be 0 or 1, found {found} ({LINES.name(row)})")
    rows[label] = labels.astype("int64")
    for name in ids:
        rows[name] = frame[name].where(frame[name] != "")  # as written; only an empty cell is missing
    return rows


def plain_rows(data: bytes, ids, names, label: str):
    """plain_table as a pandas DataFrame, or None."""
    table = plain_table(data, ids, names, label)
    return None if table is None else table.to_pandas()


def plain_table(data: bytes, ids, names, label: str):
    """labelled_rows at the speed of pyarrow's CSV reader, for a file with nothing unusual in it: UTF-8
    without NUL or a lone carriage return, a header naming each column once without spaces, every
    row as long as the header, plain numbers (an empty cell is missing), 0/1 labels and ids that do
    not start with a space. None for any other file: checked_rows reads it (and says what is wrong)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    header = text[:text.find("\n")] if "\n" in text else text
    names_seen = header.rstrip("\r").split(",")
    columns = [*ids, *names, label]
    if ("\0" in text or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")) or '"' in header or " " in header
            or len(set(names_seen)) != len(names_seen) or not set(columns) <= set(names_seen)):
        return None
    table = arrow_table(pa.py_buffer(data), len(data), ids, columns)
    if table is None:
        return None
    for name in (*names, label):
        column = table.column(name)
        if pa.types.is_floating(column.type) and not pc.all(pc.is_finite(column)).as_py():
            return None  # nan, inf: the pandas path says which are missing markers and which are refused
    labels = table.column(label)
    binary = pa.Array.from_buffers(pa.int64(), 2, [None, pa.py_buffer(b"\0" * 8 + b"\1" + b"\0" * 7)])  # [0, 1]
    if labels.null_count or not pc.all(pc.is_in(labels, binary.cast(labels.type))).as_py():
        return None  # (pa.array would import pandas)
    for name in ids:
        if pc.any(pc.starts_with(table.column(name), " ")).as_py() or \
                pc.any(pc.starts_with(table.column(name), "\t")).as_py():
            return None  # the pandas path skips initial spaces
    return table.set_column(table.column_names.index(label), label, labels.cast(pa.int64()))


def arrow_table(source, size: int, text, columns, newlines: bool = False):
    """`columns` of CSV data read by pyarrow as pandas reads them with only empty cells missing: `text`
    columns as text, the others as int64 or float64 (types inferred from the whole file, one block).
    None when pyarrow cannot read it so (no rows, a short or long row, a cell that is no number, a
    line break in a value without `newlines`): pandas' parser reads it instead."""
    import pyarrow as pa
    import pyarrow.csv as csv

    try:
        table = csv.read_csv(source, read_options=csv.ReadOptions(block_size=max(size + 1, 1 << 20)),
                             parse_options=csv.ParseOptions(newlines_in_values=newlines),
                             convert_options=csv.ConvertOptions(
                                 column_types={c: pa.string() for c in text}, null_values=[""],
                                 strings_can_be_null=True, include_columns=list(columns)))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    numeric = [table.column(c).type for c in columns if c not in text]
    if not table.num_rows or any(t not in (pa.int64(), pa.float64()) for t in numeric):
        return None  # text, booleans, dates, an all-empty column: not plain numbers
    return table
