"""Reading and writing files that someone else may have prepared: no link followed on write, no hang on read.

Every file cropmix writes goes through `atomic_writer`: a fresh temporary file is created exclusively
(mkstemp) in the target's folder, written, fsynced and renamed over the target, and the folder is
fsynced so the rename itself survives a power cut. A symlink planted at the target name is replaced,
never written through, a crash leaves the old file whole, and the temporary file is removed on any
failure. A full disk is reported as such, naming the file.

Every file cropmix reads from a user's folder can go through `open_regular` / `read_regular_bytes`:
only regular files (or links to them) are opened, never FIFOs or devices, which would hang or read
without end, and a byte limit is checked before reading.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

log = logging.getLogger("cropmix.data")

__all__ = [
    "FileError",
    "atomic_writer",
    "write_text_atomic",
    "sync_folder",
    "exclusive_folder",
    "open_regular",
    "read_regular_bytes",
    "missing_folders",
    "remove_empty_folders",
]


class FileError(OSError):
    """A file that cannot be read or written as asked, with a message naming it and the cause."""


def _explain(error: OSError, path: Path, doing: str) -> FileError:
    if error.errno == errno.ENOSPC:
        return FileError(errno.ENOSPC, f"no space left on device {doing} {path}")
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return FileError(error.errno, f"no permission {doing} {path} ({os.strerror(error.errno)})")
    return FileError(error.errno, f"{doing} {path} failed: {error.strerror or error}")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success it is fsynced and renamed over `path`.

    mode: "w" (text, UTF-8 unless `encoding` is given) or "wb". On any exception the temporary file is
    removed and `path` is left as it was. ENOSPC and permission errors become a FileError naming `path`.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    try:
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _explain(error, path, "writing") from error
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets the mode open() would give it
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        sync_folder(path.parent)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        cause = _os_error_behind(error)
        if cause is not None and not isinstance(error, FileError):
            raise _explain(cause, path, "writing") from error
        if isinstance(error, RuntimeError) and "No space left" in str(error):  # torch.save's C++ writer
            raise FileError(errno.ENOSPC, f"no space left on device writing {path}") from error
        raise


def _os_error_behind(error: BaseException) -> OSError | None:
    """`error` if it is an OSError, else the OSError it was raised while handling (torch.save's zip writer
    turns a failed write into "RuntimeError: unexpected pos"), else None."""
    seen = 0
    while error is not None and seen < 8:
        if isinstance(error, OSError):
            return error
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask can only set it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_folder(folder: str | os.PathLike) -> int:
    return os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))


def sync_folder(folder: str | os.PathLike) -> bool:
    """fsync `folder` itself, so that files created, renamed or removed in it stay so after a power cut;
    False where that cannot be done (Windows, a folder one may write but not read, a file system that
    does not sync folders): the files themselves are written all the same, only less durably."""
    if os.name == "nt":
        return False
    try:
        fd = _open_folder(folder)
    except OSError as error:
        log.debug("folder %s not synced: %s", folder, error)
        return False
    try:
        os.fsync(fd)
    except OSError as error:
        log.debug("folder %s not synced: %s", folder, error)
        return False
    finally:
        os.close(fd)
    return True


@contextlib.contextmanager
def exclusive_folder(folder: str | os.PathLike, busy: str) -> Iterator[None]:
    """Hold an exclusive lock (flock) on `folder` for the block: a FileError saying `busy` at once if another
    process holds it. Where there is no flock (Windows) the block runs unlocked."""
    if fcntl is None:
        yield
        return
    fd = _open_folder(folder)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise FileError(errno.EBUSY, busy) from error
        yield
    finally:
        os.close(fd)  # which releases the lock


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` (UTF-8) through `atomic_writer`."""
    with atomic_writer(path, "w") as handle:
        handle.write(text)


def open_regular(path: str | os.PathLike, max_bytes: int | None = None) -> IO[bytes]:
    """Open `path` for binary reading if it is a regular file (a link to one is fine) of at most `max_bytes`.

    A FIFO, socket or device is refused before it is opened (opening a FIFO blocks until a writer
    comes), and the check is repeated on the opened descriptor so a swap in between is caught.
    """
    path = Path(path)
    try:
        before = os.stat(path)
        _check_regular(before, path, max_bytes)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileError:
        raise
    except OSError as error:
        raise _explain(error, path, "reading") from error
    try:
        _check_regular(os.fstat(fd), path, max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(info: os.stat_result, path: Path, max_bytes: int | None) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise FileError(errno.EISDIR, f"{path} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise FileError(errno.EINVAL, f"{path} is not a regular file (a FIFO, device or socket is never read)")
    if max_bytes is not None and info.st_size > max_bytes:
        raise FileError(errno.EFBIG, f"{path} holds {info.st_size} bytes, more than the limit of {max_bytes}")


def read_regular_bytes(path: str | os.PathLike, max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file of at most `max_bytes` (see `open_regular`)."""
    with open_regular(path, max_bytes) as handle:
        data = handle.read() if max_bytes is None else handle.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:
        raise FileError(errno.EFBIG, f"{path} grew past the limit of {max_bytes} bytes while being read")
    return data


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """`path` and those of its parents that do not exist yet, innermost first: what creating it would make."""
    path = Path(path)
    return [p for p in (path, *path.parents) if not os.path.lexists(p)]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove `folders` (innermost first, as `missing_folders` lists them) while they are empty: what a step
    that failed before writing anything created is not left behind. The first one not empty stops it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written, or another process uses it), or gone: kept as it is
            return
