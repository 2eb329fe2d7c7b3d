"""The data sets as files: the exports finaldata.csv and testdata.csv (the original system's outputs),
and the import of a file-based release's data sets into the database.

The host that ran a tick brings its exports up to date after the commit: it appends the rows stored
since each export's mark, or rewrites an export that is missing or does not match its mark. A mark
(a hidden file beside the export) holds the id and line of the export's last row and the export's
size; it is a cache, not state: deleting an export or its mark loses nothing, the next update
rewrites it from the database (`python ingestion.py --export` does so at once).
"""

import json
import logging
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.data import datasets, rows
from riskmonitor.store import db, storage

log = logging.getLogger(__name__)
IMPORT_CHUNK_ROWS = 200_000  # rows imported per transaction: an interrupted import keeps what it committed


def exports(config: Config) -> tuple[tuple[Path, bool], ...]:
    """(path, held out) of each export."""
    return (config.finaldata_csv, False), (config.testdata_csv, True)


def mark_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.mark")


def update(config: Config, engine: sa.Engine, rewrite: bool = False, committed=None) -> dict[str, int]:
    """Bring both exports up to date with the database; the rows written to each (by file name).
    `committed`: the rows (datasets.NewRows) a commit just stored, written from memory where they are
    all the export lacks."""
    written = {}
    for path, held_out in exports(config):
        with _locked(path):
            written[path.name] = _update(config, engine, path, held_out, rewrite, committed)
    return written


def catch_up(config: Config, engine: sa.Engine, committed=None) -> None:
    """update() after a commit: a failure is logged and leaves the commit as it is (the next run, or
    `ingestion.py --export`, brings the exports up to date)."""
    try:
        written = update(config, engine, committed=committed)
    except (OSError, sa.exc.DBAPIError) as exc:  # what was committed stands; the exports are only copies
        log.error("the exports were not brought up to date: %s: %s", type(exc).__name__, exc)
        return
    if any(written.values()):
        log.info("exports brought up to date: %s", ", ".join(f"{name} +{n}" for name, n in written.items()))


def _update(config: Config, engine: sa.Engine, path: Path, held_out: bool, rewrite: bool, committed) -> int:
    """Append what the database stored since the export's mark, or rewrite it; the rows written."""
    with engine.connect() as conn:
        after = None if rewrite else _valid_mark(conn, path)
        body = _committed_lines(conn, config, held_out, after, committed)
        if body is None:
            body, last, count = datasets.read_lines(conn, held_out, after or 0)
            last_line = datasets.line_at(conn, last)[1] if last else None
        else:
            body, last, count, last_line = body
    if after is None:
        data = rows.header(config).encode() + b"\n" + body
        storage.replace_atomically(path, lambda handle: handle.write(data))
    elif count:
        _append(path, body)
    if after is None or count:
        mark = json.dumps({"last_id": last, "line": last_line, "bytes": path.stat().st_size})
        storage.replace_atomically(mark_path(path), lambda handle: handle.write(mark.encode()))
    return count


def _committed_lines(conn: sa.Connection, config: Config, held_out: bool, after: int | None, committed):
    """(lines, last id, how many, last line) of the rows of one side a commit just stored, when they are
    exactly what the database holds after the export's mark (no other commit came between); else None."""
    if after is None or committed is None:
        return None
    table = committed.side(held_out)
    d = db.dataset_rows
    count, last = conn.execute(sa.select(sa.func.count(), sa.func.max(d.c.id))
                               .where(d.c.held_out == held_out, d.c.id > after)).one()
    if count != len(table) or not count:
        return None
    lines = rows.lines(table, config)
    return "\n".join(lines.to_pylist() + [""]).encode(), last, count, lines[-1].as_py()


@contextmanager
def _locked(path: Path):
    """One writer of an export at a time, also where hosts share the data folders (flock beside it)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / ".exports.lock", "a") as handle:  # closing it releases the lock
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _valid_mark(conn: sa.Connection, path: Path) -> int | None:
    """The last row id of an export that matches its mark (its size, and the line the database holds
    under that id on the same side); None for an export to rewrite."""
    try:
        mark = json.loads(mark_path(path).read_text())
        if not path.is_file() or path.stat().st_size != mark["bytes"]:
            return None
        if mark["last_id"] == 0:
            return 0
        stored = datasets.line_at(conn, mark["last_id"])
        return mark["last_id"] if stored is not None and stored[1] == mark["line"] else None
    except (OSError, ValueError, KeyError, TypeError):  # no mark, or one that is not ours: rewrite
        return None


def _append(path: Path, body: bytes) -> None:
    import os

    with open(path, "ab") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())


def import_files(config: Config, engine: sa.Engine, run_hex: str) -> str:
    """Load the data sets of a file-based release (finaldata.csv, testdata.csv) into the database, each
    row on the side of the file it is in, in their order; rows already stored are skipped, so it can be
    run again after an interruption. Records that it ran; returns what it did."""
    import numpy as np

    added, held, mismatched = {}, 0, 0
    for path, held_out in exports(config):
        table = rows.parse(path.read_bytes(), config) if path.is_file() else rows.empty_table(config)
        held += len(table)
        added[path.name] = 0
        for start in range(0, len(table), IMPORT_CHUNK_ROWS):
            chunk = table.slice(start, IMPORT_CHUNK_ROWS)
            with engine.begin() as conn:
                read = datasets.state(conn)
                new = datasets.new_rows(conn, [chunk], config)
                mismatched += int((new.held_out != held_out).sum())
                new = replace(new, held_out=np.full(len(new.table), held_out))  # the side it was given
                datasets.commit(conn, config, new, run_hex, read)
            added[path.name] += len(new.table)
    with engine.begin() as conn:
        conn.execute(sa.update(db.dataset_state).where(db.dataset_state.c.id == 1)
                     .values(imported_at=db.now(), imported_rows=held))
    text = (f"imported {added[config.finaldata_csv.name]} training and {added[config.testdata_csv.name]} held-out "
            f"row(s) of {held} in the files (the rest were stored already)")
    if mismatched:
        text += f"; {mismatched} row(s) kept the side of their file, not the one their hash gives"
    return text
