"""Find new CSV files by content hash, validate them, and find the rows they add to the data sets
(stored by the commit of the run that ingests them: riskmonitor.data.datasets).

Bad files are quarantined: recorded with the reason, never moved, changed or deleted.
"""

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from riskmonitor.config import Config
from riskmonitor.data import datasets, rows
from riskmonitor.data.validation import InvalidData, excerpt, labelled_rows
from riskmonitor.store import storage

log = logging.getLogger(__name__)
SUMMARY_FILES = 20  # quarantined files named in a run's message; the dashboard lists them all
KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass(frozen=True)
class NewFile:
    name: str  # as recorded: a name that is not UTF-8 has its bytes escaped (caf\xe9.csv)
    path: Path
    sha256: str
    size: int | None
    mtime_ns: int | None
    kind: str | None = None  # why it is not a regular file (never opened), or None


@dataclass
class IngestResult:
    new: datasets.NewRows | None  # the rows the files add to the data sets (None: no file was usable)
    records: list[dict] = field(default_factory=list)  # ingested_files rows to store

    @property
    def new_data(self):
        """The new rows as a pyarrow Table (empty when there are none)."""
        return self.new.table if self.new is not None else None

    @property
    def quarantined(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "quarantined"]


def recorded_name(path: Path) -> str:
    """The file name as text the database and a terminal can hold: undecodable bytes as \\xNN."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def file_kind(path: Path) -> str | None:
    """None for a regular file (or a link to one); else what it is, found without opening it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return "a symbolic link to nothing"
        raise
    if stat.S_ISREG(mode):
        return None
    kind = KINDS.get(stat.S_IFMT(mode), "not a regular file")
    return f"a symbolic link to {kind}" if path.is_symlink() else kind


def find_new_files(config: Config, known: set[str], stat_cache: dict) -> list[NewFile]:
    """CSV files in the input folder whose content has not been seen, whatever their name; anything
    that is not a regular file is found by its name and kind (never opened: a FIFO would block)."""
    found, seen = [], set(known)
    folder = config.input_folder_path
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name.startswith(".") or path.suffix.lower() != ".csv":
            continue  # only CSV is watched; hidden files are partial uploads by convention
        new_file = _identify(path, stat_cache)
        if new_file is not None and (new_file.sha256 not in seen):
            seen.add(new_file.sha256)
            found.append(new_file)
    return found


def _identify(path: Path, stat_cache: dict | None = None) -> NewFile | None:
    """A NewFile for one entry of the input folder, or None if it cannot be looked at right now."""
    name = recorded_name(path)
    try:
        kind = file_kind(path)
        if kind:  # no content to hash: its name and kind stand in, so it is recorded once
            return NewFile(name, path, storage.sha256_bytes(f"{kind}\0".encode() + os.fsencode(path.name)), None, None, kind)
        info = path.stat()
        cached = (stat_cache or {}).get((name, info.st_size, info.st_mtime_ns))
        sha = cached or storage.sha256_file(path)
    except storage.NotRegularFile:  # replaced since it was looked at: seen again next tick
        return None
    except OSError as exc:  # vanished or unreadable right now: try again next tick
        log.warning("skipping %s this tick: %s", name, exc.strerror or exc)
        return None
    return NewFile(name, path, sha, info.st_size, info.st_mtime_ns)


def read_valid_rows(data: bytes, config: Config):
    """Parse and validate one file's bytes: (a pyarrow Table, None) when usable, else (None, reason)."""
    try:
        return labelled_rows(data, config.id_columns, config.features, config.label), None
    except InvalidData as exc:
        return None, exc.reason


def read_new_file(new_file: NewFile, config: Config):
    """(rows as a pyarrow Table or None, ingested_files record) for one new file."""
    frame, sha, size, mtime_ns = None, new_file.sha256, None, None
    if new_file.kind:
        error = f"not a regular file: {new_file.kind}"
    else:
        try:
            with storage.open_regular(new_file.path) as handle:  # hash exactly the bytes that are parsed
                info = os.fstat(handle.fileno())
                data = handle.read()
            frame, error = read_valid_rows(data, config)
            sha, size, mtime_ns = storage.sha256_bytes(data), info.st_size, info.st_mtime_ns
        except storage.NotRegularFile as exc:  # replaced by a FIFO or the like since it was found
            error = f"not a regular file: {exc}"
    if error:
        log.warning("quarantined %s: %s", new_file.name, error)
    record = {"file": new_file.name, "sha256": sha, "size": size, "mtime_ns": mtime_ns,
              "rows": 0, "status": "quarantined" if error else "ingested", "error": error}
    return frame, record


def ingest_files(config: Config, new_files: list[NewFile], conn, stored_rows: int | None = None) -> IngestResult:
    """Read and validate the new files, and find the rows they add to the data sets (`conn`: where to
    look them up; `stored_rows`: how many the data sets hold, when it was read already).

    Each record's rows is what the file adds: rows already stored, or in an earlier file of
    this tick, are not counted again.
    """
    tables, records, ingested = [], [], []
    for table, record in rows.in_threads(lambda new_file: read_new_file(new_file, config), new_files):
        records.append(record)
        if table is not None:
            tables.append(table)
            ingested.append(record)
    if not tables:
        return IngestResult(None, records)
    new = datasets.new_rows(conn, tables, config, stored_rows)
    for record, count in zip(ingested, new.counts, strict=True):
        record["rows"] = count
        log.info("read %s: %d row(s) added", record["file"], count)
    return IngestResult(new, records)


def summary(result: IngestResult) -> str:
    """One line for runs.message: files, rows added, and the first quarantined files with why."""
    quarantined = result.quarantined
    added = len(result.new.table) if result.new is not None else 0
    text = f"{len(result.records) - len(quarantined)} file(s) ingested, {added} new row(s)"
    if quarantined:
        text += "; quarantined: " + "; ".join(f"{excerpt(r['file'], 80)} ({r['error']})"
                                              for r in quarantined[:SUMMARY_FILES])
    if len(quarantined) > SUMMARY_FILES:
        text += f"; and {len(quarantined) - SUMMARY_FILES} more (see the dashboard's quarantined files)"
    return text
