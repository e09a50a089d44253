"""What a short batched CPU call costs back to back, after idling, and with glibc's default allocator.

BatchCropMix at B=1024 CIFAR-10 images, 32x32, preset "cifar" (one batch, 2 torch threads by
default), timed as the median of --calls calls in four regimes:
  - back to back (what a DataLoader worker producing batch after batch runs);
  - after 0.1 s idle (time.sleep) before each call;
  - after 0.1 s idle then 10 ms of Python spinning (is it only the CPU waking up?);
  - after touching 64 MiB before each call (cold caches, no idle).
Each line also gives the minor page faults per call. Run once per allocator setting, in a fresh
process each (the setting is process-wide and glibc's default thresholds adapt to the history):

    python benchmarks/cold_calls.py --allocator retain
    python benchmarks/cold_calls.py --allocator default
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable

import torch
from batch_throughput import environment, load, load_cifar, machine

from cropmix.transforms import BatchCropMix, retain_freed_memory


def timed(call: Callable[[], object], before: Callable[[], None], calls: int) -> tuple[float, float]:
    """Median ms of `call` with `before` run (untimed) ahead of each, and page faults per call."""
    seconds, faults = [], 0
    for _ in range(calls):
        before()
        start_faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start_faults
    return statistics.median(seconds) * 1e3, faults / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allocator", choices=("retain", "default"), default="retain")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=15)
    args = parser.parse_args()
    retained = args.allocator == "retain" and retain_freed_memory()
    torch.set_num_threads(args.threads)
    images = load_cifar(1024, None)
    aug = BatchCropMix.from_preset("cifar", size=32)
    junk = torch.empty(1 << 24)

    def spin() -> None:
        time.sleep(0.1)
        start = time.perf_counter()
        while time.perf_counter() - start < 0.01:
            pass

    regimes = {
        "back to back": lambda: None,
        "after 0.1 s idle": lambda: time.sleep(0.1),
        "after 0.1 s idle + 10 ms spinning": spin,
        "after touching 64 MiB": lambda: junk.fill_(1.0),
    }
    print(f"command: {environment()}python benchmarks/cold_calls.py " + " ".join(sys.argv[1:]))
    allocator = "retained" if retained else "glibc default"
    print(f"machine: {machine()}, {args.threads} torch threads; allocator: {allocator}")
    print(f"load average before: {load()}")
    for _ in range(3):
        aug(images)
    for name, before in regimes.items():
        ms, faults = timed(lambda: aug(images), before, args.calls)
        print(f"{name:36s} {ms:6.2f} ms per call ({1024 / ms * 1e3:6.0f} img/s), {faults:6.0f} page faults per call")


if __name__ == "__main__":
    from results_file import recorded

    with recorded("cold_calls"):
        main()
