"""A ten-second check that the GPU session can spend its time: the imports, the device, and one BatchCropMix
call on a list of images of different sizes with CUDA's synchronisation check on (a call that reads back to
the host or drains the stream is an error). Exit status 1, with one line saying what failed, ends the session.

    python benchmarks/gpu_probe.py --device cuda
    python benchmarks/gpu_probe.py --device cpu     # the dry run: imports and one call, no sync check
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

OPTIONAL = ("kornia", "kornia_rs", "timm", "numpy", "scipy", "PIL", "pytest", "hypothesis")


def versions() -> None:
    """Python, torch, torchvision and the optional packages the benchmarks and tests use (or 'missing')."""
    import torch
    import torchvision

    print(f"python {platform.python_version()} at {sys.executable}; torch {torch.__version__}, "
          f"torchvision {torchvision.__version__}, CUDA build {torch.version.cuda}")  # fmt: skip
    found = []
    for name in OPTIONAL:
        try:
            module = importlib.import_module(name)
        except ImportError:
            found.append(f"{name} missing")
        else:
            found.append(f"{name} {getattr(module, '__version__', '?')}")
    print(", ".join(found))


def sync_checked_call(device: str, sync_check: str) -> None:
    """One BatchCropMix call on three photo-sized images of different sizes, after one warm-up call."""
    import torch

    from cropmix import BatchCropMix

    generator = torch.Generator().manual_seed(0)
    shapes = ((375, 500), (333, 500), (500, 375))
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=generator).to(device) for h, w in shapes]
    aug = BatchCropMix.from_preset("imagenet", 224, generator=torch.Generator().manual_seed(0))
    aug(images)  # the first call pays for CUDA's lazy start-up, which may synchronise
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode(sync_check)
    try:
        out = aug(images)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    if cuda:
        torch.cuda.synchronize(device)
    if out.shape != (3, 3, 224, 224) or out.dtype != torch.uint8 or out.device.type != torch.device(device).type:
        raise SystemExit(f"probe failed: BatchCropMix returned {tuple(out.shape)} {out.dtype} on {out.device}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu (default: cuda)")
    parser.add_argument(
        "--sync-check",
        choices=("error", "warn"),
        default="error",
        help="torch.cuda.set_sync_debug_mode during the checked call: error (default) ends the session, warn warns",
    )
    args = parser.parse_args()
    start = time.perf_counter()
    import torch

    versions()
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"probe failed: --device {args.device} but torch sees no CUDA device")
        props = torch.cuda.get_device_properties(args.device)
        print(f"device {props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs")
    try:
        sync_checked_call(args.device, args.sync_check)
    except RuntimeError as error:  # what set_sync_debug_mode("error") raises, among others
        raise SystemExit(f"probe failed: the BatchCropMix list call on {args.device}: {error}") from error
    print(f"probe passed in {time.perf_counter() - start:.1f} s (device {args.device}, sync check {args.sync_check})")


if __name__ == "__main__":
    main()
