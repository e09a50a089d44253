"""Processes that end with the process that started them, so a killed run leaves no process behind.

A DDP worker ends when torchrun's agent dies (`end_with_parent`, from cropmix.train.distributed), and a
DataLoader worker when its training process dies (`EndWithParent`, the loaders' worker_init_fn).
torch's own check in DataLoader workers compares the parent's pid with the one it saw when the worker
started: a training process killed while its workers were starting (at an epoch boundary, where
checkpoints are written) re-parents them before that, and they then wait for work forever.

`worker_options` is how every loader starts its workers: as the platform does in a single process
(forked on Linux before Python 3.14), from a fork server in a process of a DDP group (see there why).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

__all__ = ["EndWithParent", "check_shared_memory", "end_with_parent", "end_with_process", "worker_options"]

_PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int | None = None, sig: int = signal.SIGTERM, poll_s: float = 1.0) -> None:
    """Have this process get `sig` when its parent dies: prctl(PR_SET_PDEATHSIG) on Linux, a thread
    watching os.getppid() elsewhere. `parent`: the pid its parent has (taken by the parent before
    starting it; default: the parent now); a process re-parented before it asked gets `sig` at once."""
    parent = os.getppid() if parent is None else parent
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before the request was made
            os.kill(os.getpid(), sig)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="cropmix-parent-watch", daemon=True).start()


def end_with_process(pid: int, sig: int = signal.SIGKILL, poll_s: float = 1.0) -> None:
    """Have this process get `sig` when the process `pid` ends, be it this one's parent or not: a thread
    waits on a pidfd (Linux 5.3 and later), else polls every `poll_s` seconds. A `pid` already gone
    sends `sig` at once."""
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os.kill(os.getpid(), sig)
        return
    except (AttributeError, OSError):  # no pidfd here (another system, an old kernel, a sandbox): poll
        handle = None

    def watch() -> None:
        if handle is not None:
            waiting = select.poll()  # not select(): it takes no descriptor numbered 1024 or above
            waiting.register(handle, select.POLLIN)
            waiting.poll()  # readable once the process has ended
        else:
            while _running(pid):
                time.sleep(poll_s)
        os.kill(os.getpid(), sig)

    threading.Thread(target=watch, name="cropmix-process-watch", daemon=True).start()


def _running(pid: int) -> bool:
    """Whether `pid` runs: neither gone nor a zombie (ended, not yet collected by its parent), which
    os.kill(pid, 0) still finds; the zombie state is read where /proc says it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, but another user's
        pass
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc on this system (then os.kill's answer stands), or the process has just gone
        return not os.path.isdir("/proc")
    return stat_line.rpartition(")")[2].split()[0] != "Z"  # the state follows the parenthesised name


class EndWithParent:
    """A DataLoader worker_init_fn: the worker is killed (SIGKILL: it holds nothing to save) when the
    process that made this object dies, then `then(worker_id)` runs, if given. Made in the process that
    starts the workers. `via_server`: the workers start from a fork server, which is then their parent;
    it outlives that process while any worker lives (each holds its end of the server's pipe), so each
    worker watches that process itself."""

    def __init__(self, then: Callable[[int], None] | None = None, via_server: bool = False) -> None:
        self.parent, self.then, self.via_server = os.getpid(), then, via_server

    def __call__(self, worker_id: int) -> None:
        end_with_parent(None if self.via_server else self.parent, signal.SIGKILL)
        if self.via_server:
            end_with_process(self.parent, signal.SIGKILL)
        if self.then is not None:
            self.then(worker_id)


SHARED_MEMORY = "/dev/shm"


def check_shared_memory(storage: torch.UntypedStorage, what: str) -> None:
    """Refuse to send `storage` to workers that are not forked (from a fork server, spawned) when it would
    not fit in SHARED_MEMORY: torch moves it there, and a worker then dies of SIGBUS mid-epoch (Docker's
    default is 64 MB)."""
    if storage.is_shared() or not os.path.isdir(SHARED_MEMORY):
        return
    stats = os.statvfs(SHARED_MEMORY)
    free = stats.f_bavail * stats.f_frsize
    if storage.nbytes() > 0.9 * free:
        raise ValueError(
            f"{what} ({storage.nbytes() / 2**20:.0f} MiB) reach loader workers that are not forked through "
            f"shared memory, but {SHARED_MEMORY} has {free / 2**20:.0f} MiB free: use workers=0 (--workers 0), "
            "augment on the device (--aug-device device), or give the machine more shared memory "
            "(docker run --shm-size)"
        )


def worker_options(then: Callable[[int], None] | None = None) -> dict:
    """DataLoader keywords for workers: worker_init_fn (`EndWithParent(then)`) and how they start.

    In a process of a DDP group they start from a fork server (torch and cropmix.data imported once
    there), never forked from the process itself: its communication threads (gloo's) enter Python, and
    a fork while one of them holds the interpreter's thread lock leaves the new worker deadlocked before
    it runs; its rank then waits for it forever, and every other rank for that one (seen within seconds
    on 2 CPU processes that start workers each epoch). Elsewhere: the start method set, else the
    platform's default (fork on Linux before Python 3.14, forkserver from 3.14: the workers' parent is
    then the server, which `EndWithParent` must be told).
    """
    dist = torch.distributed
    grouped = dist.is_available() and dist.is_initialized()
    if not grouped or "forkserver" not in multiprocessing.get_all_start_methods():
        # Read without fixing it (get_start_method() would): the first method listed is the default.
        method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
        options = {"worker_init_fn": EndWithParent(then, via_server=method == "forkserver")}
        if method != "fork":  # named, so that callers know the workers get their data pickled (and through /dev/shm)
            options["multiprocessing_context"] = multiprocessing.get_context(method)
        return options
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "cropmix.data"])  # no effect once the server runs
    return {"worker_init_fn": EndWithParent(then, via_server=True), "multiprocessing_context": context}
