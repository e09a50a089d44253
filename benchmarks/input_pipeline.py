"""Images per second delivered as normalised float batches on the training device, two ways, in one run:

  per-image: an ImageFolder read by a DataLoader with N workers (N = all cores by default), each
             image decoded with PIL and put through CropMix + flip in the worker (cropmix.data's
             per-image file path), then moved to the device and normalised there; for small files
             (CIFAR) also what `cropmix train` now does with them: decode per image, BatchCropMix
             on each batch in the worker ("files batched");
  shards:    WebDataset shards (cropmix.data.shards) read by `--shard-workers` workers that only
             read bytes; the main process decodes the batch on the device (nvJPEG on CUDA,
             libjpeg on a CPU), runs BatchCropMix + flip and normalises (cropmix.data.device_pipeline).

Data: the photos of --photos (default: the repo's examples/photos) cycled to --images files (224x224,
"imagenet" preset), and CIFAR-10 from an ImageFolder of JPEGs given with --cifar (32x32, "cifar"
preset; skipped without it). The two pipelines alternate for --rounds rounds, each timing
--max-images images (or --seconds) after --warmup batches; the median of the rounds is printed.

    python benchmarks/input_pipeline.py
    python benchmarks/input_pipeline.py --photos PHOTOS_FOLDER --cifar CIFAR_JPEG_ROOT
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cropmix.data import Batching
from cropmix.data.device_pipeline import DevicePipeline, make_augment
from cropmix.data.folder import index_folder, split_dir
from cropmix.data.loaders import make_loader
from cropmix.data.shard_reader import ShardLoader
from cropmix.data.shards import read_index, write_shards
from cropmix.models import IMAGENET_MEAN, IMAGENET_STD

PHOTOS = Path(__file__).resolve().parents[1] / "examples" / "photos"


def photo_folder(photos: Path, root: Path, images: int, classes: int = 10) -> Path:
    """An ImageFolder of `images` links to the photos, cycled, in `classes` classes (val: one per class)."""
    files = sorted(photos.glob("*.jpg"))
    if not files:
        raise SystemExit(f"--photos: no *.jpg files in {str(photos)!r}")
    for split, count in (("train", images), ("val", classes)):
        for c in range(classes):
            (root / split / f"c{c}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            os.symlink(files[i % len(files)].resolve(), root / split / f"c{i % classes}" / f"{i:06d}.jpg")
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loader(batches, to_device, device: torch.device, max_images: int, warmup: int, seconds: float) -> float:
    """Images per second over `max_images` images (or `seconds`) after `warmup` batches (a fresh epoch per call)."""
    count, start = 0, None
    for step, batch in enumerate(batches):
        images, _ = to_device(batch)
        if step + 1 == warmup:
            sync(device)
            start = time.perf_counter()
        elif step >= warmup:
            count += len(images)
            if count >= max_images or time.perf_counter() - start >= seconds:
                break
    sync(device)
    if start is None or count == 0:
        raise SystemExit(f"too few images for --warmup {warmup} and a timed batch; lower --warmup or raise --images")
    return count / (time.perf_counter() - start)


class PerImageToDevice:
    """The per-image loader's uint8 batch -> normalised float on the device (what the shards path returns)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, batch):
        images, labels = batch
        images = images.to(self.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)
        return images, labels.to(self.device, non_blocking=True)


def compare(name: str, src: Path, shards: Path, size: int, preset: str, args, device: torch.device) -> None:
    from cropmix.data import AugmentSpec, largest_file_size

    train = index_folder(split_dir(src, "train"))
    spec = AugmentSpec("cropmix", size, preset)
    transform = spec.per_image(in_memory=False)
    batching = Batching(args.batch_size, train=True, workers=args.workers, pin_memory=device.type == "cuda")
    per_image = make_loader(train, transform, batching)
    # What `cropmix train` uses for these files: small ones decode per image and run BatchCropMix per batch.
    batch_transform, batched = spec.for_workers(in_memory=False, file_size=largest_file_size(train))
    files_batched = make_loader(train, batch_transform, batching, batched_transform=True) if batched else None
    split = read_index(shards).split("train")
    loader = ShardLoader(split, Batching(batch_size=args.batch_size, train=True, workers=args.shard_workers))
    pipeline = DevicePipeline(
        make_augment("cropmix", size, preset=preset), device=device, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    to_device = PerImageToDevice(device)
    rates: dict[str, list[float]] = {"per-image": [], "shards": []} | ({"files batched": []} if batched else {})
    for round_ in range(args.rounds):
        per_image.epoch_sampler.set_epoch(round_)
        rates["per-image"].append(time_loader(per_image, to_device, device, args.max_images, args.warmup, args.seconds))
        if files_batched is not None:
            files_batched.epoch_sampler.set_epoch(round_)
            rate = time_loader(files_batched, to_device, device, args.max_images, args.warmup, args.seconds)
            rates["files batched"].append(rate)
        loader.set_epoch(round_)
        rates["shards"].append(time_loader(loader, pipeline, device, args.max_images, args.warmup, args.seconds))
        print(f"  {name} round {round_ + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rates.items()))
    a, b = statistics.median(rates["per-image"]), statistics.median(rates["shards"])
    print(f"{name}: per-image DataLoader ({args.workers} workers, CropMix per image): {a:.0f} img/s")
    print(f"{name}: shards + decode/BatchCropMix on {device} ({args.shard_workers} reader workers): {b:.0f} img/s")
    print(f"{name}: ratio shards / per-image = {b / a:.2f}x")
    if batched:
        c = statistics.median(rates["files batched"])
        print(f"{name}: files decoded per image, BatchCropMix per batch in the workers: {c:.0f} img/s ({c / a:.2f}x)")
    stages(name, loader, pipeline, device, min(args.max_images, 10 * args.batch_size))


def stages(name: str, loader: ShardLoader, pipeline: DevicePipeline, device: torch.device, images: int) -> None:
    """Where the shards path spends its time: each stage alone, one after the other, on the same batches."""
    loader.set_epoch(99)
    batches, start = [], time.perf_counter()
    for batch in loader:
        batches.append(batch)
        if sum(len(b) for b in batches) >= images:
            break
    read = time.perf_counter() - start
    n = sum(len(b) for b in batches)
    start = time.perf_counter()
    decoded = [pipeline.decode(b.images, b.keys, b.jpeg)[0] for b in batches]
    sync(device)
    decode = time.perf_counter() - start
    start = time.perf_counter()
    for images_ in decoded:
        pipeline.finish(pipeline.augment(images_))
    sync(device)
    augment = time.perf_counter() - start
    print(
        f"{name}: shards stages alone over {n} images: read (workers, incl. start-up) {n / read:.0f} img/s, "
        f"decode {n / decode:.0f} img/s, BatchCropMix + flip + normalise {n / augment:.0f} img/s"
    )


def parse_args() -> argparse.Namespace:
    cores = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", type=Path, default=PHOTOS, help="folder of *.jpg photos (default: examples/photos)")
    p.add_argument("--images", type=int, default=10_000, help="photos cycled to this many files (default: 10000)")
    p.add_argument("--cifar", type=Path, help="CIFAR-10 ImageFolder of JPEGs (train/, test/); skipped without it")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--workers", type=int, default=cores, help=f"per-image loader workers (default: all {cores} cores)")
    p.add_argument(
        "--shard-workers", type=int, default=min(cores, 4), help="shard reader workers (default: min(cores, 4))"
    )
    p.add_argument(
        "--threads", type=int, help="torch threads of the main process (default: the cores the readers leave, >= 1)"
    )
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-images", type=int, default=2000, help="images timed per pipeline and round (default: 2000)")
    p.add_argument("--seconds", type=float, default=20.0, help="or this many seconds, the sooner (default: 20)")
    p.add_argument("--warmup", type=int, default=2, help="batches before the clock starts (default: 2)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work", type=Path, help="folder for the generated folders and shards (default: a temporary one)")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is None:
        # More threads than free cores make OpenMP threads wait on the readers (loaded 2-core CPU, CIFAR, noisy:
        # 1.36x the per-image loader with 1 thread, 0.58x with 2).
        args.threads = max(1, (os.cpu_count() or 1) - args.shard_workers)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    print(
        f"torch {torch.__version__}, threads {args.threads}, batch {args.batch_size}, "
        f"up to {args.max_images} images or {args.seconds:.0f} s x {args.rounds} rounds per pipeline"
    )
    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work = Path(work)
        start = time.perf_counter()
        photos = photo_folder(args.photos, work / "photos", args.images)
        write_shards(photos, work / "photo_shards", shard_size=1000, progress=False)
        print(f"photos: {args.images} files from {args.photos}, sharded in {time.perf_counter() - start:.1f} s")
        compare("photos 224", photos, work / "photo_shards", 224, "imagenet", args, device)
        if args.cifar is None:
            print("cifar: skipped (give --cifar CIFAR10_JPEG_ROOT, an ImageFolder with train/ and test/)")
            return
        start = time.perf_counter()
        write_shards(args.cifar, work / "cifar_shards", shard_size=1000, progress=False)
        print(f"cifar: {args.cifar} sharded in {time.perf_counter() - start:.1f} s")
        compare("cifar 32", args.cifar, work / "cifar_shards", 32, "cifar", args, device)


if __name__ == "__main__":
    from results_file import recorded

    with recorded("input_pipeline"):
        main()
