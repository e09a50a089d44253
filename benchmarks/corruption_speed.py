"""Seconds per image of each of the 15 standard corruptions (ImageNet-C constants at 224, CIFAR-C at 32), and
of storing its output as the published sets are (`stored`: uint8, plus a JPEG q85 round trip at 224).

Making ImageNet-C style test sets on the fly (`cropmix eval --corruptions`) runs every corruption
at five severities over the test split, so the slowest one sets the pace. Each corruption runs on one
batch of float images in [0, 1] on the CPU (--threads), every severity once after a warm-up call;
the mean over the severities is printed.

    python benchmarks/corruption_speed.py --threads 2 --photos PHOTOS_FOLDER
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from batch_throughput import environment, load, load_cifar, load_photos, machine
from bench_data import PHOTOS

from cropmix.evaluate.corruptions import CORRUPTIONS, frost_source, stored


def seconds_per_image(images: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Mean seconds per image of each corruption over severities 1-5 (one call per severity), and of `stored`
    on its outputs."""
    result = {}
    for name, corrupt in CORRUPTIONS.items():
        generator = torch.Generator().manual_seed(0)
        stored(corrupt(images, 1, generator))
        corrupting = storing = 0.0
        for severity in range(1, 6):
            start = time.perf_counter()
            out = corrupt(images, severity, generator)
            middle = time.perf_counter()
            stored(out)
            corrupting, storing = corrupting + middle - start, storing + time.perf_counter() - middle
        result[name] = (corrupting / 5 / len(images), storing / 5 / len(images))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of *.jpg photos (default: %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load()
    photos = load_photos(args.photos)
    large = torch.stack([TF.center_crop(TF.resize(photos[i % len(photos)], 256), 224) for i in range(args.batch)])
    small = load_cifar(args.batch, None)
    rows = {size: seconds_per_image(x.float().div_(255)) for size, x in ((224, large), (32, small))}
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: {environment()}python benchmarks/{Path(__file__).name} " + " ".join(sys.argv[1:]))
    print(f"machine: {machine()}, {args.threads} torch threads")
    print(f"torch {torch.__version__}, python {platform.python_version()}")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load()}")
    print(f"frost layer: {frost_source()}")
    print()
    print(f"ms per image, B={args.batch}; + storage: `stored` on the output (uint8 + JPEG q85 at 224, uint8 at 32)")
    print()
    print("| corruption | at 224 | + storage at 224 | at 32 | + storage at 32 |")
    print("|---|---|---|---|---|")
    for name in CORRUPTIONS:
        (large, large_store), (small, small_store) = rows[224][name], rows[32][name]
        print(f"| {name} | {large * 1e3:.2f} | {large_store * 1e3:.2f} | {small * 1e3:.3f} | {small_store * 1e3:.3f} |")


if __name__ == "__main__":
    from results_file import recorded

    with recorded("corruption_speed"):
        main()
