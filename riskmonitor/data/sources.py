"""Where batches come from, and their bytes: the input folder (a local folder, or an object-store URL such as
s3://bucket/prefix, read through fsspec), then the uploads waiting in the database (POST /batches).

A batch is new when its content (sha256) has not been seen, whatever its name or source. Only CSV files
directly in the folder are watched; hidden ones (.name) are partial uploads by convention. Nothing found
is ever moved, changed or deleted. A file over max_file_mb, or anything that is not a regular file, is
quarantined without being read: its name, size and time (or kind) stand in for its content.
"""

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from riskmonitor.config import Config
from riskmonitor.store import storage, uploads

log = logging.getLogger(__name__)
KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
         stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


@dataclass(frozen=True)
class NewFile:
    name: str  # as recorded: a local name that is not UTF-8 has its bytes escaped (caf\xe9.csv)
    sha256: str
    size: int | None
    mtime_ns: int | None
    refused: str | None = None  # why it is quarantined unread, or None
    path: Path | None = None  # a file of the local folder,
    key: str | None = None  # or an object of the bucket,
    upload_id: int | None = None  # or an upload


def find_new_files(config: Config, conn, known: set[str], stat_cache: dict) -> list[NewFile]:
    """The batches whose content has not been seen: the input folder's (by name), then the uploads (oldest
    first). `stat_cache`: (name, size, mtime_ns) -> sha256 of what was recorded, so as not to hash again."""
    if config.input_folder is not None:
        found = _folder_files(config, config.input_folder, stat_cache)
    elif config.input_folder_path is not None:
        found = _bucket_objects(config, stat_cache)
    else:
        found = []
    found += [NewFile(u.name, u.sha256, u.bytes, None, _too_large(config, u.bytes), upload_id=u.id)
              for u in uploads.waiting(conn)]
    new, seen = [], set(known)
    for new_file in found:
        if new_file.sha256 not in seen:
            seen.add(new_file.sha256)
            new.append(new_file)
    return new


def read_bytes(new_file: NewFile, config: Config, engine) -> tuple[bytes, int | None]:
    """A batch's bytes and its modification time (ns, None for an upload); storage.NotRegularFile for a
    local file replaced by something else since it was found."""
    if new_file.path is not None:
        with storage.open_regular(new_file.path) as handle:  # hash exactly the bytes that are parsed
            info = os.fstat(handle.fileno())
            return handle.read(), info.st_mtime_ns
    if new_file.key is not None:
        return _bucket(config)[0].cat_file(new_file.key), new_file.mtime_ns
    return uploads.read(engine, new_file.upload_id), None


def _too_large(config: Config, size: int) -> str | None:
    if size > config.max_file_bytes:
        return f"larger than max_file_mb ({size / 2**20:,.1f} MB, the limit is {config.max_file_mb:,} MB); not read"
    return None


def _unread(name: str, refused: str, *identity) -> str:
    """The sha256 that stands in for the content of a file quarantined unread, so that it is recorded once."""
    return storage.sha256_bytes("\0".join([refused, *map(str, identity), name]).encode("utf-8", "backslashreplace"))


# --- a local folder ------------------------------------------------------------------------

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


def _folder_files(config: Config, folder: Path, stat_cache: dict) -> list[NewFile]:
    paths = sorted(folder.iterdir()) if folder.is_dir() else []
    return [f for f in (_identify(config, p, stat_cache) for p in paths if _watched(p.name)) if f is not None]


def _watched(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(".csv")


def _identify(config: Config, path: Path, stat_cache: dict) -> NewFile | None:
    """A NewFile for one entry of the local folder, or None if it cannot be looked at right now."""
    name = recorded_name(path)
    try:
        kind = file_kind(path)
        if kind:  # no content to hash (a FIFO would block): its name and kind stand in
            refused = f"not a regular file: {kind}"
            return NewFile(name, storage.sha256_bytes(f"{kind}\0".encode() + os.fsencode(path.name)), None, None,
                           refused, path)
        info = path.stat()
        if refused := _too_large(config, info.st_size):  # no mtime recorded: never a stat cache hit once read
            return NewFile(name, _unread(name, refused, info.st_size, info.st_mtime_ns), info.st_size, None,
                           refused, path)
        sha = stat_cache.get((name, info.st_size, info.st_mtime_ns)) or storage.sha256_file(path)
    except storage.NotRegularFile:  # replaced since it was looked at: seen again next tick
        return None
    except OSError as exc:  # vanished or unreadable right now: try again next tick
        log.warning("skipping %s this tick: %s", name, exc.strerror or exc)
        return None
    return NewFile(name, sha, info.st_size, info.st_mtime_ns, path=path)


# --- a bucket ------------------------------------------------------------------------------

def _bucket(config: Config):
    """(the fsspec filesystem, the prefix) of an object-store input_folder_path. fsspec finds the
    credentials as boto does: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, and
    AWS_ENDPOINT_URL for an S3-compatible server."""
    import fsspec  # only a project that reads a bucket pays for importing it

    return fsspec.core.url_to_fs(config.input_folder_path)


def _bucket_objects(config: Config, stat_cache: dict) -> list[NewFile]:
    """The CSV objects directly under the prefix. An object's modification time (LastModified) and size
    stand in for a local file's in the stat cache; a new object is read once to hash it."""
    fs, prefix = _bucket(config)
    try:
        entries = fs.ls(prefix, detail=True, refresh=True)  # a new listing every tick
    except FileNotFoundError:
        bucket = prefix.split("/", 1)[0]
        if not fs.exists(bucket):
            raise FileNotFoundError(f"input_folder_path: the bucket {bucket} does not exist "
                                    f"(or these credentials cannot see it)") from None
        return []  # a prefix with no objects yet
    found = []
    for entry in sorted(entries, key=lambda e: e["name"]):
        name = entry["name"].rsplit("/", 1)[-1]
        if entry.get("type") != "file" or not _watched(name):
            continue
        size = int(entry["size"])
        modified = entry.get("LastModified") or entry.get("mtime")
        mtime_ns = int(modified.timestamp() * 1e9) if modified is not None else None
        if refused := _too_large(config, size):
            found.append(NewFile(name, _unread(name, refused, size, mtime_ns), size, None, refused, key=entry["name"]))
            continue
        sha = stat_cache.get((name, size, mtime_ns))
        if sha is None:
            sha = storage.sha256_bytes(fs.cat_file(entry["name"]))
        found.append(NewFile(name, sha, size, mtime_ns, key=entry["name"]))
    return found
