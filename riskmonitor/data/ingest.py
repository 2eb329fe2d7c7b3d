"""Validate new batches (found by riskmonitor.data.sources) and find the rows they add to the data sets
(stored by the commit of the run that ingests them: riskmonitor.data.datasets).

Bad files are quarantined: recorded with the reason, never moved, changed or deleted.
"""

import logging
from dataclasses import dataclass, field

from riskmonitor.config import Config
from riskmonitor.data import datasets, rows, sources
from riskmonitor.data.sources import NewFile
from riskmonitor.data.validation import InvalidData, excerpt, labelled_rows
from riskmonitor.store import storage

log = logging.getLogger(__name__)
SUMMARY_FILES = 20  # quarantined files named in a run's message; the dashboard lists them all


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


def read_valid_rows(data: bytes, config: Config):
    """Parse and validate one file's bytes: (a pyarrow Table, None) when usable, else (None, reason)."""
    try:
        return labelled_rows(data, config.id_columns, config.features, config.label), None
    except InvalidData as exc:
        return None, exc.reason


def read_new_file(new_file: NewFile, config: Config, engine):
    """(rows as a pyarrow Table or None, ingested_files record) for one new batch."""
    frame, sha, size, mtime_ns, error = None, new_file.sha256, new_file.size, new_file.mtime_ns, new_file.refused
    if not error:
        try:
            data, mtime_ns = sources.read_bytes(new_file, config, engine)
            frame, error = read_valid_rows(data, config)
            sha, size = storage.sha256_bytes(data), len(data)
        except storage.NotRegularFile as exc:  # replaced by a FIFO or the like since it was found
            error, size, mtime_ns = f"not a regular file: {exc}", None, None
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
    engine = conn.engine  # uploads are read on connections of their own, in the reading threads
    for table, record in rows.in_threads(lambda new_file: read_new_file(new_file, config, engine), new_files):
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
