"""The data sets in the database: every labelled row ingested, stored once under its key (its two row
hashes) on its side, training (finaldata) or held out (testdata), in the transaction of the tick that
found it.

The state row (dataset_state) is the commit's serialization point: a tick reads its version before it
works, and its commit moves the version on only if no other commit did since (`commit`). A tick that
finds it moved stored nothing and says so; the pipeline lock only saves that work. The running
statistics of the training rows (dataset_stats) move in the same transaction, so a tick that does not
train reads none of the history.

Bulk paths: PostgreSQL's COPY; SQLite's executemany, inside the transaction.
"""

import io
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.data import rows
from riskmonitor.store import db

log = logging.getLogger(__name__)
IMPORT = "python dbsetup.py --import-datasets"
FETCH_ROWS = 100_000  # lines fetched at a time
SQLITE_PARAMETERS = 30_000  # bound parameters per query (SQLite allows 32,766)


class LostRace(RuntimeError):
    """Another commit moved the data sets on since this tick read them: this one stores nothing."""


class NotImported(RuntimeError):
    """The database counts ingested rows its data sets do not hold: a file-based release's, not imported yet."""


@dataclass(frozen=True)
class State:
    """What the data sets hold (dataset_state), as a tick read it."""

    version: int = 0
    header: str | None = None
    train_rows: int = 0
    test_rows: int = 0
    imported_at: object = None

    @property
    def rows(self) -> int:
        return self.train_rows + self.test_rows


@dataclass(frozen=True)
class NewRows:
    """Rows a tick adds: in the order they came, with their keys, sides and the rows each file added."""

    table: object  # pyarrow.Table of the data-set columns
    keys: object  # numpy (n, 2) uint64: the row hashes
    held_out: object  # numpy bool per row
    counts: tuple[int, ...] = ()

    def side(self, held_out: bool):
        """The new rows of one side, as a pyarrow Table."""
        from riskmonitor.data import rowhash

        return self.table.filter(rowhash.mask(self.held_out if held_out else ~self.held_out))


def state(conn: sa.Connection) -> State:
    """The data sets' state row."""
    row = conn.execute(sa.select(db.dataset_state).where(db.dataset_state.c.id == 1)).one()
    return State(row.version, row.header, row.train_rows, row.test_rows, row.imported_at)


def check_imported(conn: sa.Connection) -> None:
    """Refuse to work on data sets that a file-based release kept on disk and nobody imported yet."""
    current = state(conn)
    recorded, files = db.ingested_rows(conn)
    if recorded > current.rows and current.imported_at is None:
        raise NotImported(f"the database records {recorded} row(s) from {files} ingested file(s) that its data sets "
                          f"do not hold: run `{IMPORT}` on the host that holds ingesteddata/finaldata.csv and "
                          "testdata/testdata.csv")


def new_rows(conn: sa.Connection, tables: list, config: Config, stored_rows: int | None = None) -> NewRows:
    """The rows of `tables` (pyarrow Tables or DataFrames, in order) that the data sets do not hold: a row
    counts for the first table that has it; `counts` is how many each table adds."""
    import numpy as np
    import pyarrow as pa

    from riskmonitor.data import rowhash

    tables = [rows.as_table(t, config) for t in tables]
    table = pa.concat_tables(tables, promote_options="permissive") if tables else rows.empty_table(config)
    owner = np.repeat(np.arange(len(tables)), [t.num_rows for t in tables])
    keys = rows.row_hashes(table, config)
    fresh = rows.first_seen(keys)
    if (state(conn).rows if stored_rows is None else stored_rows) and fresh.any():
        fresh[fresh] = ~_stored(conn, keys[fresh])
    counts = np.bincount(owner[fresh], minlength=len(tables))
    keys = keys[fresh]
    return NewRows(table.filter(rowhash.mask(fresh)), keys, rows.held_out(None, config, keys[:, 0]),
                   tuple(int(n) for n in counts))


def _stored(conn: sa.Connection, keys):
    """True for each key (an (n, 2) uint64 array) the data sets hold, looked up by their unique index, so the
    cost follows the new rows, not the history: through a temporary table on PostgreSQL, in chunks of bound
    parameters on SQLite (30% sooner there than a temporary table)."""
    import numpy as np

    signed = keys.view(np.int64)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("CREATE TEMPORARY TABLE IF NOT EXISTS new_keys (n bigint, k1 bigint, k2 bigint) "
                             "ON COMMIT DROP")
        conn.exec_driver_sql("TRUNCATE new_keys")
        _copy(conn, "new_keys (n, k1, k2)", {"n": np.arange(len(keys)), "k1": signed[:, 0], "k2": signed[:, 1]})
        found = conn.exec_driver_sql("SELECT n.n FROM new_keys n JOIN dataset_rows d ON d.k1 = n.k1 AND d.k2 = n.k2")
        stored = np.zeros(len(keys), dtype=bool)
        stored[np.fromiter((r[0] for r in found), dtype=np.int64)] = True
        return stored
    first, found = signed[:, 0].tolist(), []
    cursor = conn.connection.driver_connection.cursor()
    try:
        for start in range(0, len(first), SQLITE_PARAMETERS):
            part = first[start:start + SQLITE_PARAMETERS]
            found += cursor.execute(f"SELECT k1, k2 FROM dataset_rows WHERE k1 IN ({','.join('?' * len(part))})",
                                    part).fetchall()
    finally:
        cursor.close()
    return np.isin(_pairs(signed), _pairs(np.array(found, dtype=np.int64).reshape(-1, 2)))


def _pairs(keys):
    """Each (k1, k2) row as one 16-byte value, compared as bytes."""
    import numpy as np

    return np.ascontiguousarray(keys).view(np.dtype((np.void, 16))).ravel()


def commit(conn: sa.Connection, config: Config, new: NewRows | None, run_hex: str, read: State) -> None:
    """The serialization point of a commit, then the new rows and their statistics, in the caller's
    transaction: LostRace when another commit moved the data sets on since `read`."""
    moved = conn.execute(sa.update(db.dataset_state).where(db.dataset_state.c.id == 1,
                                                           db.dataset_state.c.version == read.version)
                         .values(version=db.dataset_state.c.version + 1))
    if moved.rowcount != 1:
        raise LostRace("another tick (on this host or another) committed first: this one stored nothing, "
                       "and the next tick finds whatever is still new")
    if new is None or not len(new.table):
        return
    current = state(conn)
    if current.header not in (None, rows.header(config)):
        raise ValueError(f"the data sets hold the columns {current.header}; config.json names {rows.header(config)}")
    _insert(conn, config, new, run_hex)
    trained = int((~new.held_out).sum())
    conn.execute(sa.update(db.dataset_state).where(db.dataset_state.c.id == 1).values(
        header=rows.header(config), train_rows=current.train_rows + trained,
        test_rows=current.test_rows + len(new.table) - trained))
    write_stats(conn, rows.merge_stats(stats(conn, config), rows.column_stats(new.table, config, ~new.held_out)))


def _insert(conn: sa.Connection, config: Config, new: NewRows, run_hex: str) -> None:
    import numpy as np

    signed = new.keys.view(np.int64)
    columns = {"k1": signed[:, 0], "k2": signed[:, 1], "held_out": new.held_out,
               "hex": np.full(len(new.table), run_hex, dtype=object), "line": rows.lines(new.table, config)}
    if conn.dialect.name == "postgresql":
        _copy(conn, "dataset_rows (k1, k2, held_out, hex, line)", columns)
    else:
        _executemany(conn, "INSERT INTO dataset_rows (k1, k2, held_out, hex, line) VALUES (?, ?, ?, ?, ?)", columns)


def _copy(conn: sa.Connection, target: str, columns: dict) -> None:
    """COPY columns (arrays of equal length) into target, on the caller's connection and transaction."""
    import pyarrow as pa
    import pyarrow.csv as csv

    buffer = pa.BufferOutputStream()
    csv.write_csv(pa.table(columns), buffer, csv.WriteOptions(include_header=False))
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.copy_expert(f"COPY {target} FROM STDIN WITH (FORMAT csv)", io.BytesIO(buffer.getvalue().to_pybytes()))
    finally:
        cursor.close()


def _executemany(conn: sa.Connection, sql: str, columns: dict) -> None:
    """executemany of columns (arrays of equal length) on the caller's connection and transaction."""
    values = [c.tolist() if hasattr(c, "tolist") else list(c) for c in columns.values()]
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.executemany(sql, zip(*values, strict=True))
    finally:
        cursor.close()


def stats(conn: sa.Connection, config: Config) -> dict:
    """The running statistics of the training rows (rows.column_stats' shape)."""
    found = {r.name: r for r in conn.execute(sa.select(db.dataset_stats))}

    def of(name: str, key: str, zero):
        return getattr(found[name], key) if name in found else zero

    return {"rows": state(conn).train_rows, "missing": {c: int(of(c, "missing", 0)) for c in config.columns},
            "features": {f: {"n": int(of(f, "n", 0)), "mean": float(of(f, "mean", 0.0)), "m2": float(of(f, "m2", 0.0))}
                         for f in config.features}}


def write_stats(conn: sa.Connection, merged: dict) -> None:
    """Replace the running statistics (in the caller's transaction)."""
    conn.execute(sa.delete(db.dataset_stats))
    conn.execute(sa.insert(db.dataset_stats), [
        {"name": c, "missing": merged["missing"][c], **merged["features"].get(c, {"n": 0, "mean": 0.0, "m2": 0.0})}
        for c in merged["missing"]])


def read(conn: sa.Connection, config: Config, held_out: bool, after_id: int = 0):
    """(rows of one side as a pyarrow Table, the id of the last): those stored after row id `after_id`,
    in the order they were stored."""
    body, last, _ = read_lines(conn, held_out, after_id)
    return rows.parse(rows.header(config).encode() + b"\n" + body, config), last


def frame(conn: sa.Connection, config: Config, held_out: bool, pending: NewRows | None = None):
    """One side's rows as a pandas DataFrame in the order they were stored, followed by that side's rows of
    `pending` (a tick's new rows, stored by its commit)."""
    import pyarrow as pa

    table, _ = read(conn, config, held_out)
    if pending is not None and len(pending.table):
        table = pa.concat_tables([table, pending.side(held_out)], promote_options="permissive")
    return table.to_pandas()


def read_lines(conn: sa.Connection, held_out: bool, after_id: int = 0) -> tuple[bytes, int, int]:
    """(the lines of one side stored after row id `after_id`, each ended by a newline; the id of the last,
    or after_id; how many): on the driver's cursor, which reads a million lines in a fraction of the
    time SQLAlchemy's rows take."""
    sql = "SELECT id, line FROM dataset_rows WHERE held_out = %(side)s AND id > %(after)s ORDER BY id"
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor(name=f"lines_{id(conn)}")  # a server-side cursor
        cursor.itersize = FETCH_ROWS
    else:
        sql = sql.replace("%(side)s", ":side").replace("%(after)s", ":after")
        cursor = conn.connection.driver_connection.cursor()
    chunks, last, count = [], after_id, 0
    try:
        cursor.execute(sql, {"side": held_out, "after": after_id})
        while part := cursor.fetchmany(FETCH_ROWS):
            last, count = part[-1][0], count + len(part)
            chunks.append("\n".join([line for _, line in part] + [""]).encode())
    finally:
        cursor.close()
    return b"".join(chunks), last, count


def line_at(conn: sa.Connection, row_id: int) -> tuple[bool, str] | None:
    """(side, line) of one stored row, or None."""
    row = conn.execute(sa.select(db.dataset_rows.c.held_out, db.dataset_rows.c.line)
                       .where(db.dataset_rows.c.id == row_id)).first()
    return None if row is None else (bool(row.held_out), row.line)


def last_id(conn: sa.Connection) -> int:
    """The newest row's id (0 before the first): a watermark."""
    return conn.execute(sa.select(sa.func.max(db.dataset_rows.c.id))).scalar() or 0
