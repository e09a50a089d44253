"""Images per second on one thread, from JPEG bytes to a float (C, H, W) tensor ready to normalise.

Pipelines, all measured in one run, interleaved round by round so that load
on the machine hits them alike:
  (a)  PIL decode -> v2 RandomResizedCrop -> flip -> ToImage -> ToDtype(float32)   (the usual ImageFolder recipe)
  (a') PIL decode -> ToImage -> v2 RandomResizedCrop on the uint8 tensor -> flip -> ToDtype  (a faster RRC)
  (b)  naive CropMix as the authors' code does it: N torchvision RRCs on PIL, ToTensor each, mix in float
  (c)  PIL decode -> CropMix (PIL in, PIL out) -> flip -> ToImage -> ToDtype
  (c') PIL decode -> ToImage -> CropMix on the uint8 tensor -> flip -> ToDtype

    python benchmarks/throughput.py                      # photos at 224 ("imagenet") and CIFAR at 32 ("cifar")
    python benchmarks/throughput.py --rounds 7 --cifar-images 2000 --photos DIR --cifar CIFAR10_JPEG_ROOT

By default the photos are the repo's examples/photos and the CIFAR images come from the CIFAR-10
subset shipped in examples/cifar10_subset (its training JPEGs).
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from bench_data import PHOTOS, cifar_folder, photo_files, spread, subset_jpeg_bytes
from PIL import Image
from torchvision import transforms as v1
from torchvision.transforms import v2

from cropmix import preset
from cropmix.transforms import preset_kwargs


def load_bytes(paths: list[Path]) -> list[bytes]:
    return [p.read_bytes() for p in paths]


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


class NaiveCropMix:
    """The authors' way: one PIL RandomResizedCrop + ToTensor per band, then float Mixup with channel permutation."""

    def __init__(self, size: int, scale: tuple[float, float], num_crops: tuple[int, ...], alpha: float) -> None:
        self.size, self.scale, self.num_crops, self.alpha = size, scale, num_crops, alpha
        self.to_tensor = v1.ToTensor()

    def __call__(self, image: Image.Image) -> torch.Tensor:
        n = self.num_crops[int(torch.randint(len(self.num_crops), ()))]
        lo, hi = self.scale
        step = (hi - lo) / n
        views = [
            self.to_tensor(v1.RandomResizedCrop(self.size, scale=(lo + i * step, lo + (i + 1) * step))(image))
            for i in range(n)
        ]
        order = torch.randperm(n).tolist()
        mixed = views[order[0]]
        beta = torch.distributions.Beta(self.alpha / n, self.alpha / n)
        for k in order[1:]:
            lam = float(beta.sample())
            other = views[k]
            if lam <= 0.5:
                mixed = mixed[torch.randperm(3)]
            else:
                other = other[torch.randperm(3)]
            mixed = lam * mixed + (1 - lam) * other
        return mixed


def pipelines(preset_name: str, size: int) -> dict[str, Callable[[bytes], torch.Tensor]]:
    kwargs = preset_kwargs(preset_name, size)
    flip = v2.RandomHorizontalFlip()
    to_float = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
    rrc = v2.RandomResizedCrop(size, antialias=True)
    cropmix = preset(preset_name, size)
    crops = kwargs["num_crops"]
    naive = NaiveCropMix(size, kwargs["scale"], crops if isinstance(crops, tuple) else (crops,), kwargs["alpha"])
    to_image, to_dtype = v2.ToImage(), v2.ToDtype(torch.float32, scale=True)
    return {
        "(a) RRC": lambda b: to_float(flip(rrc(decode(b)))),
        "(a') RRC on tensor": lambda b: to_dtype(flip(rrc(to_image(decode(b))))),
        "(b) naive CropMix": lambda b: flip(naive(decode(b))),
        "(c) CropMix": lambda b: to_float(flip(cropmix(decode(b)))),
        "(c') CropMix on tensor": lambda b: to_dtype(flip(cropmix(to_image(decode(b))))),
    }


def measure(name: str, data: list[bytes], preset_name: str, size: int, rounds: int) -> dict[str, float]:
    """Median images/s per pipeline over interleaved rounds."""
    fns = pipelines(preset_name, size)
    for fn in fns.values():  # warm-up
        for b in data[:20]:
            fn(b)
    rates: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            start = time.perf_counter()
            for b in data:
                fn(b)
            rates[key].append(len(data) / (time.perf_counter() - start))
    medians = {k: statistics.median(v) for k, v in rates.items()}
    a, b = medians["(a) RRC"], medians["(b) naive CropMix"]
    print(f"\n{name}: {len(data)} images, output {size}x{size}, preset {preset_name!r}, {rounds} rounds (median)")
    print(f"{'pipeline':<26}{'img/s':>10}{'vs (a)':>9}{'vs (b)':>9}")
    for key, rate in medians.items():
        print(f"{key:<26}{rate:>10.1f}{rate / a:>8.2f}x{rate / b:>8.2f}x")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="folder of *.jpg photos (default: %(default)s)")
    parser.add_argument("--cifar", help="CIFAR-10 JPEG ImageFolder root (default: the shipped subset's JPEGs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photo-repeats", type=int, default=10, help="passes over the photos per round")
    parser.add_argument("--cifar-images", type=int, default=2000)
    args = parser.parse_args()
    photo_bytes = load_bytes(photo_files(args.photos)) * args.photo_repeats
    if args.cifar is None:
        cifar_bytes = spread(subset_jpeg_bytes("train"), args.cifar_images)
    else:
        files = sorted((cifar_folder(args.cifar, "--cifar") / "train").glob("*/*.jpg"))
        cifar_bytes = load_bytes(spread(files, args.cifar_images))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, 1 thread, {platform.processor() or platform.machine()}")
    print(f"{len(photo_bytes) // args.photo_repeats} photos from {args.photos}; {len(cifar_bytes)} CIFAR-10 JPEGs")

    photo = measure("photos", photo_bytes, "imagenet", 224, args.rounds)
    small = measure("CIFAR-10", cifar_bytes, "cifar", 32, args.rounds)
    print("\ntargets: photos (c) >= 0.9x (a) and >= 1.6x (b); CIFAR (c) >= 0.9x (a) and >= 2x (b)")
    for name, m, need_b in (("photos", photo, 1.6), ("CIFAR", small, 2.0)):
        ra, rb = m["(c) CropMix"] / m["(a) RRC"], m["(c) CropMix"] / m["(b) naive CropMix"]
        ok = "met" if ra >= 0.9 and rb >= need_b else "NOT met"
        print(f"{name}: (c)/(a) = {ra:.2f}, (c)/(b) = {rb:.2f} -> {ok}")


if __name__ == "__main__":
    from results_file import recorded

    with recorded("per_image_throughput"):
        main()
