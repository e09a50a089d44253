"""The run folder of `cropmix train` and `cropmix pretrain`: used only as asked, by one writer at a time.

`run_folder(out, resume)` is held for a whole run. Before anything is written it refuses a folder an
earlier run used unless asked to resume it (and a resume with no checkpoint), creates the folder,
checks that it can be written, and takes an exclusive lock (a POSIX record lock on OUT/.lock, which
records the holder's pid), so a second process on the same folder is refused instead of mixing two
runs. The lock belongs to the process that took it (not to the data-loader workers it forks) and
ends with it, however it ends. Under torchrun only rank 0 writes, so only rank 0 locks. A run that
fails before writing anything (a bad model option, say) removes the folders it created, lock file
included; a process that waited for that lock sees it gone and stops instead of writing nowhere.

Resuming compares the request with the configuration stored in the checkpoint (`changed_fields`):
paths compare resolved, so a relative path, an absolute one and a trailing slash agree, and the
run folder's own path is not compared, so a moved run resumes. The number of processes is stored
too: a resume under another world size would change the batches and the schedule, so it is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cropmix.data.safe_files import FileError, missing_folders, remove_empty_folders

from .checkpoint import CHECKPOINT
from .run_files import (
    CONFIG,
    RUN_FILES,
    check_out_folder,
    is_pretrain_run,
    read_json,
)

try:
    import fcntl
except ImportError:  # no flock on this platform: runs are not locked
    fcntl = None

LOCK = ".lock"
LOCK_WAIT_S = 3.0
# Temporary names of what a run writes: a process killed while writing leaves one behind.
_TEMPORARY_OF = tuple(name for name in RUN_FILES if "." in name)  # its files, eval's too (not the tensorboard folder)

__all__ = [
    "DivergedError",
    "RunInterrupted",
    "changed_config_error",
    "changed_fields",
    "check_reuse",
    "check_world_size",
    "diverged",
    "interrupted",
    "launch_env",
    "run_folder",
    "same_path",
]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says what the run folder keeps and how to continue."""


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the message names where and what was kept."""


def launch_env() -> tuple[int, int]:
    """(rank, world size) that torchrun gave this process, (0, 1) outside it; known before joining the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")) if world > 1 else 0), world


def used_files(out: Path) -> list[str]:
    """The run files (see `run_files.RUN_FILES`) present in `out`."""
    return [name for name in RUN_FILES if os.path.lexists(out / name)]


def check_reuse(out: Path, resume: bool, command: str = "train") -> None:
    """Refuse `out` unless it fits the request: a new run needs a folder no run has used, `resume` one
    with a checkpoint of the same command ("train" or "pretrain"). The message names what was found
    and what to do."""
    check_out_folder(out)
    found = used_files(out) if out.is_dir() else []
    listed = ", ".join(found)
    if CHECKPOINT in found and CONFIG in found:
        _check_same_command(out, command)
    if resume and CHECKPOINT not in found:
        message = f"--resume: no checkpoint {str(out / CHECKPOINT)!r} to resume from"
        if found:
            message += f"; it holds {listed}: choose another --out, or delete them and start without --resume"
        raise FileNotFoundError(message)
    if not resume and CHECKPOINT in found:
        raise ValueError(
            f"run folder {str(out)!r} already holds a checkpoint ({listed}): pass --resume to continue that run, "
            "or choose another --out (or delete the folder)"
        )
    if not resume and found:
        raise ValueError(
            f"run folder {str(out)!r} already holds {listed} from an earlier run, but no checkpoint to resume "
            "from: choose another --out, or delete those files to start afresh"
        )


def _check_same_command(out: Path, command: str) -> None:
    """Refuse a run folder of the other command (a `cropmix pretrain` run given to `cropmix train`, or the
    reverse), naming the command that continues it, instead of the fields one config lacks."""
    try:
        saved = read_json(out / CONFIG)
    except (OSError, ValueError):  # unreadable: the checkpoint's own checks name what is wrong
        return
    kind = "pretrain" if is_pretrain_run(saved) else "train"
    if kind != command:
        raise ValueError(
            f"run folder {str(out)!r} holds a `cropmix {kind}` run, not a `cropmix {command}` one: choose another "
            f"--out (`cropmix {kind} --resume` continues that run)"
        )


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, resume: bool, main: bool = True, command: str = "train") -> Iterator[Path]:
    """Hold `out` for a run (see the module's docstring) of `command` ("train" or "pretrain"); `main` False
    (a torchrun rank other than 0): only the read-only checks. Yields the folder's path."""
    out = Path(out)
    check_reuse(out, resume, command)  # before anything is created: a refused request writes nothing
    if not main:
        yield out
        return
    created = missing_folders(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        message = f"cannot create run folder {out} ({error.strerror}): choose another --out"
        raise FileError(error.errno, message) from error
    try:
        _check_writable(out)
        fd = _lock(out)
    except BaseException:  # without the lock: another process's lock file (and folder) is left alone
        remove_empty_folders(created)
        raise
    try:
        check_reuse(out, resume, command)  # again under the lock: another process may have written meanwhile
        _remove_stale_temporaries(out)
        yield out
    except BaseException:
        _remove_if_unused(out, created)
        raise
    finally:
        os.close(fd)  # releases the lock


def _remove_if_unused(out: Path, created: list[Path]) -> None:
    """After a run failed before writing anything (a bad model option, say), remove the folders this run
    created (`created`, innermost first), so that the failure leaves no empty run folder behind."""
    if not created:
        return
    try:
        if os.listdir(out) == [LOCK]:
            os.unlink(out / LOCK)
    except OSError:  # the folder went away or cannot be read: the run's own error is the one to show
        return
    remove_empty_folders(created)


def _check_writable(out: Path) -> None:
    try:
        fd, name = tempfile.mkstemp(dir=out, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise FileError(error.errno, f"no space left on device writing {out}") from error
        message = f"run folder {out} is not writable ({error.strerror}): choose another --out"
        raise FileError(error.errno, message) from error


def _lock(out: Path) -> int:
    """An open descriptor of out/.lock holding the exclusive lock (`_try_lock`); FileError naming the
    holder's pid if another process holds it."""
    path = out / LOCK
    flags = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        raise FileError(error.errno, f"cannot open the lock file {path} ({error.strerror}): remove it") from error
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileError(errno.EINVAL, f"the lock file {path} is not a regular file: remove it")
        if fcntl is not None and not _try_lock(fd, LOCK_WAIT_S):
            holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
            raise FileError(
                errno.EBUSY,
                f"run folder {out} is in use by another process (pid {holder}): wait for it to end, "
                "or choose another --out",
            )
        if not _still_there(path, fd):
            raise FileError(
                errno.ENOENT, f"run folder {out} was removed by the run that held it while this one waited: run again"
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _still_there(path: Path, fd: int) -> bool:
    """Whether `path` is still the lock file `fd` holds: a run that failed before writing anything removes
    its new folder, lock file included, and a process that waited for that lock must not use it."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
    except FileNotFoundError:
        return False


def _try_lock(fd: int, wait_s: float) -> bool:
    """Take the exclusive lock on `fd`, retrying for `wait_s` seconds (a process killed a moment ago may
    still be exiting); False if another process holds it all that time."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of a writer killed mid-write (the lock says none is writing now)."""
    for name in _TEMPORARY_OF:
        for path in (*out.glob(f".{name}.*.tmp"), out / f"{name}.tmp"):
            if path.is_symlink() or path.is_file():
                path.unlink()


def same_path(a: Any, b: Any) -> bool:
    """Whether two path settings name the same file: resolved, unless either is a URL (compared as given)."""
    if not (isinstance(a, str) and isinstance(b, str)) or "://" in a + b or a.startswith("pipe:"):
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def changed_fields(
    requested: dict[str, Any], saved: dict[str, Any], may_change: set[str], paths: set[str]
) -> list[str]:
    """The fields of `requested` that differ from `saved`, leaving out `may_change` (and "out": a run
    folder may move); those in `paths` compare with `same_path`."""
    changed = []
    for key, value in requested.items():
        if key in may_change or key == "out":
            continue
        same = same_path(value, saved.get(key)) if key in paths else saved.get(key) == value
        if not same:
            changed.append(key)
    return sorted(changed)


def changed_config_error(
    changed: list[str], requested: dict[str, Any], saved: dict[str, Any], checkpoint: Path, labels: dict, hint: str = ""
) -> ValueError:
    """The error for a resume that asks for other values of the fields `changed` than the checkpoint's
    config holds: each named with its option (`labels`: the configuration's `by_key`), the value asked
    and the one stored, so the fix needs no look into the checkpoint."""
    shown = "; ".join(
        f"{labels[key].label if key in labels else key}: asked {_short(requested.get(key))}, "
        f"the checkpoint has {_short(saved.get(key))}"
        for key in changed
    )
    return ValueError(
        f"--resume with a different configuration: fields {changed} differ from {str(checkpoint)!r} ({shown}){hint}"
    )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_world_size(saved: Any, world: int, checkpoint: Path) -> None:
    """Refuse a resume under another number of processes than the checkpoint's run had (None: a
    checkpoint from before the number was stored, accepted)."""
    if saved is not None and saved != world:
        raise ValueError(
            f"--resume with {world} process(es), but {checkpoint} was written by a run of {saved}: resume with "
            f"the same number (torchrun --nproc_per_node {saved}), as the batches and the schedule depend on it"
        )


def interrupted(out: Path, saved: str | None) -> RunInterrupted:
    """The error for Ctrl-C in a run whose last checkpoint is `saved` ("epoch 3", say; None: none yet)."""
    if saved is None:
        return RunInterrupted(f"interrupted before the first checkpoint: nothing was kept in {out}")
    return RunInterrupted(
        f"interrupted: the checkpoint of {saved} (the last completed) is kept in {out}; "
        "run the same command with --resume to continue"
    )


def diverged(value: float, where: str, saved: str | None, out: Path, lr: float) -> DivergedError:
    """The error for a non-finite loss `value` at `where`, with the last checkpoint `saved` kept."""
    kept = f"the checkpoint of {saved} is kept in {out}" if saved is not None else "no checkpoint was saved yet"
    return DivergedError(
        f"training diverged: the loss is {value} at {where}; {kept}: try a lower --lr (this run's is {lr:g})"
    )
