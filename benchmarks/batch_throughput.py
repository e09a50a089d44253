"""Throughput of BatchCropMix against CropMix in a per-image loop, kornia's RandomResizedCrop and a plain resize.

Four settings, each on one batch of uint8 images already in memory (on --device):
  - 32x32, B = 1024 CIFAR-10 training images (--cifar, default: the subset shipped in
    examples/cifar10_subset), preset "cifar" (Mixup), and the same with mix="cutmix";
  - 224x224, B = 256 photos (--photos, default: examples/photos, cycled) resized to 375x500
    (ImageNet's most common size), preset "imagenet";
  - 224x224, B = 64 photos at their own sizes (a list; kornia and the plain resize need one size).
Methods are timed in interleaved rounds (in each, one method's calls back to back for at least
0.2 s); the median of the rounds is reported. The per-image CropMix loop always runs on the CPU
(it is the DataLoader-worker baseline), with --threads and with one thread as in a DataLoader
worker; "--threads x 1-thread loop" is that loop ideally spread over as many workers, the
strongest CPU baseline (per-image torch ops lose more to thread start-up than they gain).
BatchCropMix, kornia and the resize run on --device. kornia gets float input (its requirement):
its time includes the uint8 -> float conversion. "resize" is one antialiased
torchvision resized_crop of the whole batch, the same central box (80% of each side) for every
image: the floor no per-image crop-and-mix can beat (a plain resize is a no-op at 32 -> 32).
The minor page faults of one more BatchCropMix call (this process's, from getrusage) are printed,
and on CUDA its peak memory. A second table gives, per setting (and for CutMix at 224), the aten
ops one batch issues on the CUDA code path, counted on meta tensors (kernels, views, host->device
copies, host reads), beside the host time per batch: on meta (the CUDA path's host work, no GPU
needed), on CUDA without a sync when --device is CUDA, and of `make_params`. Last, the PSNR of one-crop
BatchCropMix against torchvision's antialiased resized_crop (uint8, bilinear and bicubic); on the
CPU, where large crops are resized by torch's own kernel, also that of the
separable passes a GPU runs.

    python benchmarks/batch_throughput.py --threads 2 --device cpu --rounds 7

On a shared, oversubscribed CPU, OpenMP's spinning threads stall torch's 2-thread ops; run with
OMP_WAIT_POLICY=PASSIVE there (the header line shows it), or compare at --threads 1. glibc returns
large freed blocks to the system, so each batch faults its big buffers in again (costly in a VM);
--allocator retain (the default) keeps them, as the cropmix command does (`retain_freed_memory`, the same as
MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456); the header shows which ran.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from bench_data import PHOTOS, cifar_folder, photo_files, spread, subset_jpeg_bytes
from results_file import environment, machine
from torchvision.io import decode_jpeg, read_file
from torchvision.transforms.v2 import InterpolationMode

import cropmix.transforms.functional.resample as resample
from cropmix.transforms import BatchCropMix, preset, render_batch, retain_freed_memory
from cropmix.transforms.functional.ops import count_ops


def load_cifar(n: int, folder: str | None) -> torch.Tensor:
    """n CIFAR-10 training images spread over the classes: from the shipped subset, or from `folder` (--cifar)."""
    if folder is None:
        blobs = spread(subset_jpeg_bytes("train"), n)
        return torch.stack([decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)) for b in blobs])
    files = spread(sorted((cifar_folder(folder, "--cifar") / "train").glob("*/*.jpg")), n)
    return torch.stack([decode_jpeg(read_file(str(f))) for f in files])


def load_photos(folder: Path) -> list[torch.Tensor]:
    return [decode_jpeg(read_file(str(f))) for f in photo_files(folder)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    methods: dict[str, Callable[[], object]], rounds: int, device: torch.device, block_seconds: float = 0.2
) -> dict[str, float]:
    """Median seconds per call of each method, timed in interleaved rounds after warm-up.

    In each round a method runs back to back for at least block_seconds (as timeit's autorange):
    sustained throughput, as a DataLoader worker producing batch after batch sees it. The blocks
    are sized from a warm call (the first call pays for allocations, kernel loading and caches:
    sized from it, GPU blocks spanned only 1-4 calls). A single short call right after other work
    runs on a cold CPU: on the 2-core VM a 14 ms BatchCropMix call took up to 2x as long after
    0.1 s idle (benchmarks/RESULTS.md), while the per-image loop, one long call, hardly noticed.
    """
    calls = {}
    for name, fn in methods.items():
        fn()  # warm-up
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        calls[name] = max(1, math.ceil(block_seconds / (time.perf_counter() - start)))
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / calls[name])
    return {name: statistics.median(t) for name, t in times.items()}


def host_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 15) -> float:
    """Median host seconds of one call, the device drained before each (on CUDA: the time to enqueue it)."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    sync(device)
    return statistics.median(times)


def op_counts(
    images: torch.Tensor | list[torch.Tensor], name: str, size: int, device: torch.device, kernel: str, **overrides
) -> dict[str, float]:
    """The CUDA path's aten ops for one batch of this shape, counted on meta tensors (no device, no data),
    beside the host time per batch: on meta (the CUDA path's host work, no GPU needed), of
    `make_params`, and on --device when it is CUDA."""
    g = torch.Generator().manual_seed(0)
    aug = BatchCropMix.from_preset(name, size=size, generator=g, kernel=kernel, **overrides)
    if isinstance(images, torch.Tensor):
        meta = torch.empty(images.shape, dtype=images.dtype, device="meta")
    else:
        meta = [torch.empty(x.shape, dtype=x.dtype, device="meta") for x in images]
    params = aug.make_params(meta)
    config = aug.config

    def run() -> torch.Tensor:
        return render_batch(meta, params, config.size, config.antialias, config.interpolation, kernel, "cuda")

    _, counts = count_ops(run)
    row = {
        "kernels": counts.kernels,
        "views": counts.views,
        "copies": counts.host_to_device,
        "reads": counts.host_reads,
        "meta ms": 1e3 * host_seconds(run, torch.device("meta")),
        "params ms": 1e3 * host_seconds(lambda: aug.make_params(meta), torch.device("cpu")),
    }
    if device.type == "cuda":
        dev = images.to(device) if isinstance(images, torch.Tensor) else [x.to(device) for x in images]
        row["cuda ms"] = 1e3 * host_seconds(lambda: aug.render(dev, params), device)
    return row


def print_op_table(rows: list[tuple[str, dict[str, float]]]) -> None:
    print(
        "| setting | aten kernels | views | host->device copies | host reads | host ms per batch, meta | "
        "host ms per batch, CUDA (no sync) | make_params ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for title, r in rows:
        cuda = f"{r['cuda ms']:.2f}" if "cuda ms" in r else "-"
        print(
            f"| {title} | {r['kernels']} | {r['views']} | {r['copies']} | {r['reads']} | {r['meta ms']:.2f} | "
            f"{cuda} | {r['params ms']:.2f} |"
        )


def one_thread(fn: Callable[[], object]) -> object:
    """Run fn with one torch thread, as in a DataLoader worker (torch sets one thread per worker)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(threads)


def kornia_rrc(size: int, scale: tuple[float, float]) -> Callable[[torch.Tensor], torch.Tensor] | None:
    try:
        import kornia.augmentation as K
    except ImportError:
        return None
    aug = K.RandomResizedCrop((size, size), scale=scale)
    return lambda x: aug(x.float().div_(255))


def psnr_vs_torchvision(
    photos: list[torch.Tensor], size: int, interpolation: InterpolationMode, kernel: str | None, repeats: int = 6
) -> tuple[float, float]:
    """Mean and minimum PSNR (dB) of one-crop BatchCropMix against torchvision's antialiased resized_crop (uint8)."""
    g = torch.Generator().manual_seed(0)
    aug = BatchCropMix(size, scale=(0.01, 1.0), num_crops=1, interpolation=interpolation, generator=g, kernel=kernel)
    scores = []
    for _ in range(repeats):
        params = aug.make_params(photos)
        out = aug.render(photos, params)
        for i, img in enumerate(photos):
            top, left, h, w = (int(v) for v in params.crops[i, 0])
            ref = TF.resized_crop(img, top, left, h, w, [size, size], interpolation=interpolation, antialias=True)
            mse = ((out[i].double() - ref.double()) ** 2).mean().item()
            scores.append(10 * math.log10(255.0**2 / max(mse, 1e-12)))
    return statistics.mean(scores), min(scores)


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def images_per_second(
    images: torch.Tensor | list[torch.Tensor],
    name: str,
    size: int,
    rounds: int,
    device: torch.device,
    kernel: str | None,
    **overrides,
) -> dict[str, float]:
    """Images per second of each method on one batch (kornia and the resize only for a uniform batch)."""
    batch_aug = BatchCropMix.from_preset(name, size=size, kernel=kernel, **overrides)
    loop_aug = preset(name, size=size, **overrides)
    cpu_images = list(images) if isinstance(images, torch.Tensor) else images
    dev_images = images.to(device) if isinstance(images, torch.Tensor) else [x.to(device) for x in images]
    methods: dict[str, Callable[[], object]] = {
        "BatchCropMix": lambda a=batch_aug, x=dev_images: a(x),
        "CropMix loop": lambda a=loop_aug, xs=cpu_images: torch.stack([a(x) for x in xs]),
        "CropMix loop, 1 thread": lambda a=loop_aug, xs=cpu_images: one_thread(lambda: torch.stack([a(x) for x in xs])),
    }
    if isinstance(images, torch.Tensor):
        rrc = kornia_rrc(size, batch_aug.config.scale)
        if rrc is not None:
            methods["kornia RandomResizedCrop"] = lambda f=rrc, x=dev_images: f(x)
        methods["resize"] = lambda x=dev_images: central_resized_crop(x, size)
    seconds = measure(methods, rounds, device)
    result = {k: len(images) / v for k, v in seconds.items()}
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batch_aug(dev_images)
    result["faults"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        batch_aug(dev_images)
        result["peak GB"] = (torch.cuda.max_memory_allocated(device) - base) / 1e9
    return result


def central_resized_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """One antialiased resized_crop of the whole batch: the central 80% of each side, to size x size."""
    H, W = images.shape[-2:]
    h, w = round(0.8 * H), round(0.8 * W)
    return TF.resized_crop(images, (H - h) // 2, (W - w) // 2, h, w, [size, size], antialias=True)


def print_table(rows: list[tuple[str, dict[str, float]]]) -> None:
    def cell(ips: dict[str, float], key: str, fmt: str = "{:.0f}") -> str:
        return fmt.format(ips[key]) if key in ips else "-"

    def ratio(ips: dict[str, float], key: str, times: int = 1) -> str:
        return f"{ips['BatchCropMix'] / (times * ips[key]):.2f}x" if key in ips else "-"

    threads = torch.get_num_threads()
    print(
        "| setting | BatchCropMix img/s | CropMix loop img/s | loop, 1 thread img/s | kornia RRC img/s | "
        f"resize img/s | Batch / loop | Batch / ({threads} x 1-thread loop) | Batch / kornia | Batch peak GB | "
        "Batch page faults |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for title, ips in rows:
        print(
            f"| {title} | {ips['BatchCropMix']:.0f} | {ips['CropMix loop']:.0f} | "
            f"{ips['CropMix loop, 1 thread']:.0f} | {cell(ips, 'kornia RandomResizedCrop')} | {cell(ips, 'resize')} | "
            f"{ratio(ips, 'CropMix loop')} | {ratio(ips, 'CropMix loop, 1 thread', threads)} | "
            f"{ratio(ips, 'kornia RandomResizedCrop')} | {cell(ips, 'peak GB', '{:.2f}')} | {ips['faults']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of *.jpg photos (default: %(default)s)")
    parser.add_argument("--cifar", help="CIFAR-10 JPEG ImageFolder root (default: the shipped subset's JPEGs)")
    parser.add_argument(
        "--device-method",
        choices=("dense", "gather"),
        default=resample.DEVICE_METHOD,
        help="the kernel off the CPU: the separable passes by batched matmuls or by embedding_bag gathers "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--allocator",
        choices=("retain", "default"),
        default="retain",
        help="retain: glibc keeps freed memory (retain_freed_memory, as the cropmix command does); "
        "default: glibc's own thresholds, under which each batched CPU call faults its buffers in again",
    )
    args = parser.parse_args()
    allocator = "glibc default"
    if args.allocator == "retain":
        retained = retain_freed_memory()
        allocator = "retained (retain_freed_memory)" if retained else "not retained (not glibc, or MALLOC_* set)"
    device_kernel = None if args.device == "cpu" else args.device_method
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = load()
    torch.manual_seed(0)

    cifar = load_cifar(1024, args.cifar)
    photos = load_photos(args.photos)
    uniform = torch.stack([TF.resize(photos[i % len(photos)], [375, 500], antialias=True) for i in range(256)])
    native = [photos[i % len(photos)] for i in range(64)]

    settings = [
        ("32x32, B=1024 CIFAR-10 (uniform batch)", cifar, "cifar", 32, {}),
        ("32x32, B=1024 CIFAR-10, CutMix", cifar, "cifar", 32, {"mix": "cutmix"}),
        ("224x224, B=256 photos resized to 375x500 (uniform batch)", uniform, "imagenet", 224, {}),
        ("224x224, B=64 photos at native sizes (list)", native, "imagenet", 224, {}),
    ]
    rows = [
        (title, images_per_second(batch, name, size, args.rounds, device, device_kernel, **overrides))
        for title, batch, name, size, overrides in settings
    ]
    settings.insert(
        3, ("224x224, B=256 photos resized to 375x500, CutMix", uniform, "imagenet", 224, {"mix": "cutmix"})
    )
    ops = [(setting[0], op_counts(*setting[1:4], device, args.device_method, **setting[4])) for setting in settings]
    dev_photos = [p.to(device) for p in photos]
    modes = (InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
    psnr = {(mode, "as dispatched"): psnr_vs_torchvision(dev_photos, 224, mode, device_kernel) for mode in modes}
    if device.type == "cpu":  # the CPU resizes large crops with torch's own kernel: check the GPU's passes too
        psnr |= {(mode, "separable passes"): psnr_vs_torchvision(dev_photos, 224, mode, "gather") for mode in modes}
    print(f"date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: {environment()}python benchmarks/{Path(__file__).name} " + " ".join(sys.argv[1:]))
    method = f" (separable passes: {device_kernel})" if device_kernel else ""
    print(f"machine: {machine()}, {torch.get_num_threads()} torch threads, device {device}{method}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, allocator: {allocator}")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load()}")
    print()
    print_table(rows)
    print()
    print(f"The CUDA code path's ops per batch (separable passes: {args.device_method}), counted on meta tensors:")
    print()
    print_op_table(ops)
    print()
    for (mode, kind), (mean, worst) in psnr.items():
        print(
            f"PSNR of BatchCropMix ({kind}; one crop, scale 0.01-1, 224x224, {mode.value}, uint8) against "
            f"torchvision's antialiased resized_crop on {len(photos)} photos: mean {mean:.1f} dB, min {worst:.1f} dB"
        )


if __name__ == "__main__":
    from results_file import recorded

    with recorded("batched_throughput"):
        main()
