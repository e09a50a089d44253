"""retain_freed_memory: glibc keeps freed heap, so repeated large allocations stop faulting pages in."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from cropmix import retain_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
GLIBC_VERSION = tuple(int(part) for part in platform.libc_ver()[1].split(".")[:2] if part.isdigit())

# Scripts below start with this: `libc.mallinfo2()`, glibc's counters (hblkhd: bytes in mmapped
# blocks; arena: bytes of heap).
MALLINFO = """
import ctypes
class MallInfo2(ctypes.Structure):
    names = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
    _fields_ = [(name, ctypes.c_size_t) for name in names.split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
"""


def fresh_python(script: str, *args: str, **env: str) -> str:
    """The last line `script` prints in a fresh interpreter (no MALLOC_* settings but those in env)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    command = [sys.executable, "-c", MALLINFO + script, *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return done.stdout.strip().splitlines()[-1]


# In a fresh process: where a 16 MiB block comes from (glibc's mallinfo2: bytes in mmapped blocks, heap
# growth that outlives it), and the page faults of ten rounds of three 4 MiB buffers filled and freed. By default the
# block is mmapped (the initial mmap threshold is 128 KiB); whether the rounds fault depends on the
# heap's layout. Retained, the block comes from the heap, stays there when freed, and the rounds reuse it.
ROUNDS = """
import json, resource, sys, torch
from cropmix import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "retain" else None
mmapped, heap = libc.mallinfo2().hblkhd, libc.mallinfo2().arena
block = torch.empty(1 << 22).fill_(1.0)
mmapped = libc.mallinfo2().hblkhd - mmapped
del block
heap = libc.mallinfo2().arena - heap
def round_():
    buffers = [torch.empty(1 << 20).fill_(1.0) for _ in range(3)]
    del buffers
for _ in range(3):
    round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round_()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "mmapped": mmapped, "heap": heap, "faults": faults}))
"""


def run_rounds(mode: str, **env: str) -> dict:
    return json.loads(fresh_python(ROUNDS, mode, **env))


@pytest.mark.skipif(not GLIBC or GLIBC_VERSION < (2, 33), reason="mallopt and mallinfo2 are glibc's (2.33+)")
def test_retained_memory_stays_in_the_heap_and_is_reused_without_page_faults():
    default, retained = run_rounds("default"), run_rounds("retain")
    assert default["applied"] is None and default["mmapped"] >= 16 << 20 and default["heap"] < 4 << 20, default
    assert retained["applied"] is True
    assert retained["mmapped"] == 0 and retained["heap"] >= 8 << 20, retained
    # 10 rounds x 12 MiB is ~30,000 pages if faulted in again; reused, (almost) none.
    assert retained["faults"] < 500, retained


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_the_environment_settings_win():
    assert run_rounds("retain", MALLOC_TRIM_THRESHOLD_="131072")["applied"] is False


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(trim_bytes=0), ValueError, r"trim_bytes must be in \[1, 2147483647\], got 0"),
        (dict(trim_bytes=2**31), ValueError, "trim_bytes must be in"),
        (dict(mmap_bytes=(1 << 25) + 1), ValueError, r"mmap_bytes must be in \[1, 33554432\]"),
        (dict(mmap_bytes=1.5), TypeError, "mmap_bytes must be an int, got float"),
        (dict(trim_bytes=True), TypeError, "trim_bytes must be an int, got bool"),
    ],
)
def test_bad_thresholds_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        retain_freed_memory(**kwargs)


# A fresh process builds a loader with one worker; the batched transform, in the worker, reports
# how much of a 16 MiB block came from mmap (glibc's default) rather than the heap (retained); then
# the same in the main process, which make_loader leaves alone.
WORKER = """
import torch
from cropmix.data.arrays import ArraySplit
from cropmix.data import Batching, make_loader
def mmapped(images):
    before = libc.mallinfo2().hblkhd
    block = torch.empty(1 << 22).fill_(1.0)
    return torch.full((len(images),), float(libc.mallinfo2().hblkhd - before))
split = ArraySplit(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.arange(8), ["a"])
loader = make_loader(split, mmapped, Batching(4, workers=1), batched_transform=True)
print(int(next(iter(loader))[0][0]), int(mmapped(split.images)[0]))
"""


@pytest.mark.skipif(not GLIBC or GLIBC_VERSION < (2, 33), reason="mallopt and mallinfo2 are glibc's (2.33+)")
def test_workers_of_a_batched_transform_retain_freed_memory():
    in_worker, in_main = (int(v) for v in fresh_python(WORKER).split())
    assert in_worker == 0
    assert in_main >= 16 << 20
