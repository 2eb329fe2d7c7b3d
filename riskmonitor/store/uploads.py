"""Uploads (POST /batches): a batch's bytes kept in the database until a tick ingests them, on any host.

The API stores an upload (store); a tick lists the waiting ones (waiting) and reads their bytes (read)
like the input folder's files; the commit that records the files settles them (settle): an upload whose
rows are stored loses its bytes and keeps its record (name, sha256, bytes, who, the run, its rows).
"""

import hashlib
import tempfile

import sqlalchemy as sa

from riskmonitor.store.db import now
from riskmonitor.store.schema import UPLOAD_CHUNK_BYTES, ingested_files, upload_chunks, uploads

READ_BYTES = 1 << 20  # the request body is read in pieces of this size


class UploadTooLarge(ValueError):
    """The body is over max_file_mb."""


class EmptyUpload(ValueError):
    """The body has no bytes."""


def store(engine: sa.Engine, name: str, stream, limit: int, who: str | None) -> tuple[str, int, bool]:
    """Store the bytes read from `stream` (at most `limit`) as an upload named `name`: (sha256, bytes, stored).

    Not stored (False) when the same bytes were seen already, uploaded or read from the input folder,
    whatever their name: a batch is new by its content. The body is spooled to a temporary file first
    (in memory up to one chunk), so that a large upload never sits in the worker's memory whole.
    """
    digest, size = hashlib.sha256(), 0
    with tempfile.SpooledTemporaryFile(max_size=UPLOAD_CHUNK_BYTES) as spool:
        for piece in iter(lambda: stream.read(READ_BYTES), b""):
            size += len(piece)
            if size > limit:
                raise UploadTooLarge(f"the upload is larger than max_file_mb ({limit // (1024 * 1024)} MB)")
            digest.update(piece)
            spool.write(piece)
        if size == 0:
            raise EmptyUpload("the body is empty: send the CSV file's bytes")
        sha = digest.hexdigest()
        try:
            with engine.begin() as conn:
                if seen(conn, sha):
                    return sha, size, False
                upload_id = conn.execute(uploads.insert().values(
                    name=name, sha256=sha, bytes=size, received_at=now(), who=who).returning(uploads.c.id)).scalar_one()
                spool.seek(0)
                for seq, data in enumerate(iter(lambda: spool.read(UPLOAD_CHUNK_BYTES), b"")):
                    conn.execute(upload_chunks.insert().values(upload_id=upload_id, seq=seq, data=data))
        except sa.exc.IntegrityError:  # the same bytes, uploaded at the same moment by another request
            with engine.connect() as conn:
                if seen(conn, sha):
                    return sha, size, False
            raise
    return sha, size, True


def seen(conn: sa.Connection, sha256: str) -> bool:
    """Whether these bytes were uploaded or ingested (or quarantined) before."""
    for column in (uploads.c.sha256, ingested_files.c.sha256):
        if conn.execute(sa.select(sa.literal(1)).where(column == sha256).limit(1)).first():
            return True
    return False


def waiting(conn: sa.Connection) -> list:
    """The uploads no tick has ingested or quarantined yet, oldest first (id, name, sha256, bytes)."""
    return conn.execute(sa.select(uploads.c.id, uploads.c.name, uploads.c.sha256, uploads.c.bytes)
                        .where(uploads.c.hex.is_(None)).order_by(uploads.c.id)).all()


def read(engine: sa.Engine, upload_id: int) -> bytes:
    """An upload's bytes (on a connection of its own: files are read in threads)."""
    with engine.connect() as conn:
        return b"".join(conn.execute(sa.select(upload_chunks.c.data).where(upload_chunks.c.upload_id == upload_id)
                                     .order_by(upload_chunks.c.seq)).scalars())


def settle(conn: sa.Connection, run_hex: str) -> None:
    """In the commit that records the files: every waiting upload whose bytes are now recorded (ingested or
    quarantined, by this tick or, after a race with the upload, an earlier one) is marked with the run, and
    the bytes of those whose rows are stored are deleted."""
    recorded = sa.select(ingested_files.c.sha256).where(ingested_files.c.sha256 == uploads.c.sha256)
    added = (sa.select(sa.func.max(ingested_files.c.rows))
             .where(ingested_files.c.sha256 == uploads.c.sha256, ingested_files.c.status == "ingested")
             .scalar_subquery())
    conn.execute(uploads.update().where(uploads.c.hex.is_(None), recorded.exists()).values(hex=run_hex, rows=added))
    stored = sa.select(uploads.c.id).where(uploads.c.sha256.in_(
        sa.select(ingested_files.c.sha256).where(ingested_files.c.status == "ingested")))
    conn.execute(upload_chunks.delete().where(upload_chunks.c.upload_id.in_(stored)))
