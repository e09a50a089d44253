"""Each benchmark writes its current figures to benchmarks/results/<claim>.md: what it printed, headed
by the date, the machine and the exact command, so the file says where every figure comes from.
The history of earlier figures is git's, not the file's.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"  # CROPMIX_RESULTS_DIR elsewhere (the tests use a temporary one)


def machine() -> str:
    """The CPU model as lscpu names it."""
    model = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError) as err:
        print(f"lscpu failed: {err}", file=sys.stderr)
    return model


def environment() -> str:
    """The environment variables set that change these timings (OpenMP threads, glibc's allocator), as a prefix."""
    names = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    return "".join(f"{k}={os.environ[k]} " for k in names if k in os.environ)


def machine_line() -> str:
    """CPU model and core count, GPU if any, and the library versions behind the figures."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{machine()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
        f"python {platform.python_version()}, {platform.system()} {platform.machine()}"
    )


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


@contextlib.contextmanager
def recorded(claim: str) -> Iterator[None]:
    """Print as usual and, when the block ends without an error, write the output to results/<claim>.md."""
    buffer = io.StringIO()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    command = environment() + "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    stdout = sys.stdout
    sys.stdout = _Tee(stdout, buffer)
    try:
        yield
    finally:
        sys.stdout = stdout
    folder = Path(os.environ.get("CROPMIX_RESULTS_DIR", RESULTS))
    folder.mkdir(parents=True, exist_ok=True)
    header = f"# {claim}\n\n- date: {started}\n- machine: {machine_line()}\n- command: `{command}`\n\n"
    (folder / f"{claim}.md").write_text(header + "```\n" + buffer.getvalue().rstrip() + "\n```\n")
    print(f"figures written to {folder / (claim + '.md')}")
