"""Files on disk: atomic writes, and the one place an ``OSError`` becomes a :class:`StorageError`.

Every file the pipeline delivers or keeps (chunk audio, chapter files, the book, reports, state) is
written the same way: into a temporary ``.<name>.<random>.part`` beside its target, optionally
fsynced, then renamed over the target. A reader therefore sees the old file or the new one, never
half of one, and a crash leaves only ``.part`` files, which :func:`remove_stale_parts` deletes on
the next run (they are never a rename target, so deleting them is always safe).

File-system failures are foreign errors: :func:`storage_error` translates them into the project's
:class:`StorageError`, whose message names the path and the fix (a full disk, a read-only folder, a
file where a folder should be, missing permission). Callers wrap their own file operations with it
(``raise storage_error(exc, path, doing="write") from exc``); the helpers here already do.
"""

from __future__ import annotations

import errno
import glob
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import StorageError

PART_SUFFIX = ".part"


def _default_file_mode() -> int:
    """The mode an ordinary new file gets here (temporary files start private; deliverables must not)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


OUTPUT_FILE_MODE = _default_file_mode()
PRIVATE_FILE_MODE = 0o600


def _blocking_file(path: Path) -> Path | None:
    """The first existing component of ``path`` (or its parents) that is a file, not a folder."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if not candidate.is_dir() else None
    return None


def storage_error(exc: OSError, path: os.PathLike[str] | str, *, doing: str) -> StorageError:
    """A :class:`StorageError` for ``exc``, raised while trying to ``doing`` (a verb phrase) ``path``."""
    path = Path(path)
    code = exc.errno
    where = f"cannot {doing} {path}"
    if code in (errno.ENOSPC, errno.EDQUOT):
        message = (f"{where}: the disk is full (or over quota). Free some space, then rerun the same command: "
                   "nothing finished is lost")
    elif code == errno.EROFS:
        message = f"{where}: the file system is read-only. Make it writable, or choose another `output` folder"
    elif code in (errno.EACCES, errno.EPERM):
        message = (f"{where}: permission denied. Make {path.parent} writable for this user, or choose another "
                   "`output` folder")
    elif code in (errno.ENOTDIR, errno.EEXIST) and (blocking := _blocking_file(path)) is not None:
        message = (f"{where}: {blocking} is a file where a folder should be. Move or rename it, or choose "
                   "another `output` folder")
    elif code == errno.EISDIR:
        message = f"{where}: it is a folder where a file should be. Move or rename it"
    elif code == errno.ENAMETOOLONG:
        message = f"{where}: the name is too long for this file system. Shorten the book title or chapter ids"
    elif code == errno.EIO:
        message = f"{where}: an input/output error (a failing or disconnected disk?). Check the disk, then rerun"
    else:
        message = f"{where}: {exc.strerror or exc}"
    return StorageError(message, path=path)


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and its parents if needed."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, path, doing="create the folder") from exc
    return path


def part_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (``.<name>.<random>.part``)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{PART_SUFFIX}")


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, target: Path, *, durable: bool = False, mode: int = OUTPUT_FILE_MODE) -> None:
    """Rename the finished temporary file ``tmp`` over ``target`` (fsynced first when ``durable``)."""
    try:
        if durable:
            _fsync_file(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        raise storage_error(exc, target, doing="write") from exc
    if durable:
        fsync_dir(target.parent)


def unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise storage_error(exc, path, doing="delete") from exc


@contextmanager
def atomic_path(target: Path, *, durable: bool = False, mode: int = OUTPUT_FILE_MODE) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; renamed over ``target`` when the block succeeds.

    A block that writes nothing there leaves ``target`` untouched; a block that fails leaves no
    temporary file. ``OSError`` inside the block becomes a :class:`StorageError` naming ``target``.
    """
    ensure_dir(target.parent)
    tmp = part_path(target)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise storage_error(exc, target, doing="write") from exc
        if tmp.exists():
            commit(tmp, target, durable=durable, mode=mode)
    finally:
        if tmp.exists():
            unlink_quietly(tmp)


def write_atomic(target: Path, data: bytes | str, *, durable: bool = False, mode: int = OUTPUT_FILE_MODE) -> None:
    """Write ``data`` (text as UTF-8) to ``target`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(target, durable=durable, mode=mode) as tmp:
        tmp.write_bytes(payload)


class TempFiles:
    """Several temporary files in one folder, committed together; whatever is not committed is
    deleted on the way out. Use as a context manager."""

    def __init__(self, folder: Path) -> None:
        self.folder = ensure_dir(folder)
        self._made: list[Path] = []

    def new(self, name: str, *, folder: Path | None = None) -> Path:
        """A temporary path for the file ``name`` (not created), in this group's folder or ``folder``."""
        tmp = part_path((ensure_dir(folder) if folder is not None else self.folder) / name)
        self._made.append(tmp)
        return tmp

    def commit(self, tmp: Path, target: Path, *, durable: bool = False) -> None:
        commit(tmp, target, durable=durable)

    def __enter__(self) -> TempFiles:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        for tmp in self._made:
            if tmp.exists():
                unlink_quietly(tmp)


def remove_stale_parts(folder: Path, names: list[str] | None = None) -> int:
    """Delete temporary files a killed run left in ``folder`` (for ``names`` only, or all of them);
    returns how many."""
    if not folder.is_dir():
        return 0
    patterns = [f".{glob.escape(name)}.*{PART_SUFFIX}" for name in names] if names is not None \
        else [f".*{PART_SUFFIX}"]
    removed = 0
    for pattern in patterns:
        for stale in folder.glob(pattern):
            if stale.is_file():
                unlink_quietly(stale)
                removed += 1
    return removed
