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
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"  # CROPMIX_RESULTS_DIR elsewhere (the tests use a temporary one)


def machine_line() -> str:
    """CPU model and core count, GPU if any, and the library versions behind the figures."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{model}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}, "
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
    command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
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
