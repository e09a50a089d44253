"""Keeping freed memory in the process, so that repeated batched CPU calls do not fault their pages in again.

BatchCropMix on the CPU allocates tens of MB of intermediates per call. glibc's defaults hand
blocks over its (adaptive) mmap threshold to the system on free, and trim the freed top of the
heap past twice that: every call then touches fresh pages, and each first touch is a page fault
(zeroing a page; in a VM, often a trip to the host), which can be half of a call's time for
batches of CIFAR images. glibc's MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_ environment settings fix it but must be set before the process starts;
`retain_freed_memory` sets the same from Python (mallopt). It is process-wide, so it is never
applied on import: the `cropmix` command applies it, a script calls it itself.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems (mallopt takes an int).
MAX_MMAP_THRESHOLD = 1 << 25
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def retain_freed_memory(trim_bytes: int = 1 << 28, mmap_bytes: int = MAX_MMAP_THRESHOLD) -> bool:
    """Make glibc keep up to trim_bytes of freed heap for reuse, and serve blocks under mmap_bytes from the heap.

    Process-wide, and inherited by forked DataLoader workers; the price is a resident size that
    stays near its peak (at most trim_bytes above what is in use). Returns True when applied;
    False, changing nothing, where the C library is not glibc or where the process was started
    with MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set (the user's choice stands).
    """
    for name, value, high in (("trim_bytes", trim_bytes, 2**31 - 1), ("mmap_bytes", mmap_bytes, MAX_MMAP_THRESHOLD)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if not 0 < value <= high:
            raise ValueError(f"{name} must be in [1, {high}], got {value}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or any(k in os.environ for k in ENVIRONMENT):
        return False
    libc = ctypes.CDLL(None)  # the process's own symbols, glibc's among them (find_library may run ldconfig)
    for option, value in ((M_MMAP_THRESHOLD, mmap_bytes), (M_TRIM_THRESHOLD, trim_bytes)):
        if libc.mallopt(ctypes.c_int(option), ctypes.c_int(value)) != 1:
            raise OSError(f"glibc's mallopt refused option {option} = {value}")
    return True
