"""Files that must never be seen half-written: hashes, atomic replaces, the pipeline lock."""

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a directory): never read."""


class ModelIntegrityError(RuntimeError):
    """A model file is missing or does not match the sha256 the database recorded for it."""


class UnreadableFile(PermissionError):
    """A file the pipeline wrote that this process may not read (another user's, without read access)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_regular(path: Path):
    """A regular file opened for reading in binary; NotRegularFile for anything else. O_NONBLOCK:
    opening a FIFO whose writer never comes returns at once instead of blocking for good."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(f"not a regular file (mode {stat.filemode(mode)})")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def replace_atomically(path: Path, write) -> None:
    """Call write(handle) on a temporary file beside path, flush it to disk, then os.replace it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600: an API running as another user must read it
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)  # never leave a partial temporary file behind, then let the error go on
        raise


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc), else set back at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:  # not Linux: the classic two calls
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def pipeline_lock(project_dir: Path, wait: bool, engine=None) -> Iterator[bool]:
    """Hold the pipeline lock, so that one tick or step at a time rewrites the data sets and the
    model; yields False (holding nothing) if it is taken and wait is False.

    The lock is the project's .pipeline.lock (flock) and, on PostgreSQL, an advisory lock of the
    database as well: hosts that share the database and the data folders take turns too.
    """
    import fcntl

    with open(Path(project_dir) / ".pipeline.lock", "a") as handle:  # closing the file releases it
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        if engine is None or engine.dialect.name != "postgresql":
            yield True
            return
        from riskmonitor.store import db

        with db.advisory_lock(engine, db.PIPELINE_LOCK, wait) as held:
            yield held
