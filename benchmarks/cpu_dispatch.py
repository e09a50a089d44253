"""Where the CPU should switch BatchCropMix from its batched separable passes to torch's kernel per crop.

`render_batch` on the CPU resizes crop by crop (torch's uint8 kernel, `_native_views`) when the
output area times the mean source area reaches PER_CROP_MIN_AREA_PRODUCT, and runs the batched
passes otherwise. This times both, and the per-image CropMix loop, on
B = 256 photos resized to each source size, one torch thread (as in a DataLoader worker), in
interleaved rounds, and prints which one the current rule picks: the rule's thresholds come from
this table (benchmarks/RESULTS.md). glibc keeps freed memory (`retain_freed_memory`), as in the
`cropmix` command.

    python benchmarks/cpu_dispatch.py --rounds 5
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from batch_throughput import environment, load, load_photos, machine, measure
from bench_data import PHOTOS

import cropmix.transforms.functional.batch as kernel
from cropmix.transforms import BatchCropMix, cpu_batch_passes, preset, retain_freed_memory

# (source side, output side, preset): outputs around the area rule, small outputs from large sources.
SETTINGS = [
    (32, 32, "cifar"),
    (40, 40, "cifar"),
    (48, 48, "cifar"),
    (64, 64, "cifar"),
    (80, 80, "cifar"),
    (96, 96, "cifar"),
    (128, 112, "imagenet"),
    (64, 16, "imagenet"),
    (96, 32, "cifar"),
    (96, 32, "imagenet"),
    (128, 32, "cifar"),
    (375, 32, "imagenet"),
    (256, 64, "imagenet"),
    (375, 64, "imagenet"),
    (375, 96, "imagenet"),
    (375, 224, "imagenet"),
]
NEVER, ALWAYS = 1 << 62, 0


def forced(kind: str, fn):
    """fn with the dispatch rule forced to one kernel ("batched" or "per crop")."""

    def run():
        saved = kernel.PER_CROP_MIN_AREA_PRODUCT
        kernel.PER_CROP_MIN_AREA_PRODUCT = NEVER if kind == "batched" else ALWAYS
        try:
            return fn()
        finally:
            kernel.PER_CROP_MIN_AREA_PRODUCT = saved

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of *.jpg photos (default: %(default)s)")
    args = parser.parse_args()
    retained = retain_freed_memory()  # as the cropmix command runs it
    torch.set_num_threads(1)
    torch.manual_seed(0)
    load_before = load()
    photos = load_photos(args.photos)
    rows = []
    for source, out, name in SETTINGS:
        images = torch.stack(
            [TF.resize(photos[i % len(photos)], [source, source], antialias=True) for i in range(args.batch)]
        )
        batch_aug, loop_aug = BatchCropMix.from_preset(name, size=out), preset(name, size=out)
        methods = {
            "loop": lambda a=loop_aug, xs=list(images): torch.stack([a(x) for x in xs]),
            "batched": forced("batched", lambda a=batch_aug, x=images: a(x)),
            "per crop": forced("per crop", lambda a=batch_aug, x=images: a(x)),
        }
        seconds = measure(methods, args.rounds, torch.device("cpu"))
        picked = "batched" if cpu_batch_passes((out, out), source, source) else "per crop"
        rows.append((f"{source}->{out} [{name}]", {k: args.batch / v for k, v in seconds.items()}, picked))
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: {environment()}python benchmarks/{Path(__file__).name} " + " ".join(sys.argv[1:]))
    print(f"machine: {machine()}, 1 torch thread; torch {torch.__version__}, python {platform.python_version()}")
    print(f"allocator: {'retained (retain_freed_memory)' if retained else 'glibc default'}")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load()}")
    print(f"rule: per crop from output area x mean source area >= {kernel.PER_CROP_MIN_AREA_PRODUCT:.3g}")
    print()
    print("| source->output [preset] | loop img/s | batched passes img/s | per crop img/s | faster | rule picks |")
    print("|---|---|---|---|---|---|")
    for title, ips, picked in rows:
        faster = max(("batched", "per crop"), key=lambda k: ips[k])
        mark = "" if faster == picked else " (!)"
        speeds = " | ".join(f"{ips[k]:.0f}" for k in ("loop", "batched", "per crop"))
        print(f"| {title} | {speeds} | {faster} | {picked}{mark} |")


if __name__ == "__main__":
    from results_file import recorded

    with recorded("cpu_dispatch"):
        main()
