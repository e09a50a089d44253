"""Accuracy under the 15 standard corruptions of `corruptions.py` (CIFAR-10-C / ImageNet-C, generated on the
fly with the reference formulas), from one pass over the loader; by default each corrupted batch is first
stored as the published sets are (`corruptions.stored`: uint8, plus JPEG q85 for the ImageNet table)."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterable

import torch
from torch import nn
from tqdm import tqdm

from .corruptions import CORRUPTIONS, frost_source, storage_of, stored
from .options import CorruptionOptions, check_count
from .predict import batches


def _generator_seed(seed: int, name: str, severity: int) -> int:
    # Stable across runs and independent of which other corruptions are evaluated.
    return (seed * 1_000_003 + zlib.crc32(name.encode()) * 7 + severity) % (2**63)


def _image_count(loader: Iterable, max_images: int | None) -> int | None:
    """Images the loader will give (capped at max_images), or None when it cannot say."""
    dataset = getattr(loader, "dataset", None)
    n = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
    if max_images is None:
        return n
    return max_images if n is None else min(n, max_images)


def _check_arguments(names: list[str], max_images: int | None) -> None:
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(
            f"names must be None or a non-empty subset of the corruptions {list(CORRUPTIONS)}, got {names!r}"
        )
    check_count(max_images, "max_images")


@torch.no_grad()
def corruption_accuracy(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    options: CorruptionOptions | None = None,
    *,
    max_images: int | None = None,
    progress: bool = True,
) -> dict:
    """Top-1 accuracy (percent) of `model` on corrupted copies of the loader's images.

    Returns {"mean": mean over all corruptions and severities, "per_corruption": {name: mean
    over severities}, "per_severity": {name: [accuracy per severity]}, "storage": how the corrupted
    images were kept, "frost_source" (when frost is scored): "imagecorruptions" (the reference's
    photographs) or "procedural"}. `options` (default: the 15 corruptions at severities 1-5) says which
    copies to score. `options.storage=True` (default) scores the images as the published sets hold
    them, truncated to uint8 and for the ImageNet table (images over 64 px) JPEG q85 round-tripped
    ("uint8" / "uint8 + JPEG q85"); False scores the float outputs ("float"). Each (corruption,
    severity) pair draws from its own generator seeded from `options.seed`, so results are reproducible
    for a loader with a fixed order. `max_images` keeps the first images in loader order; for a
    sample of a class-sorted set, pass a loader over a random subset instead (as `cropmix eval` does).
    The progress bar counts images times (corruption, severity) pairs.
    """
    options = CorruptionOptions() if options is None else options
    names = list(CORRUPTIONS) if options.names is None else list(options.names)
    severities, seed = list(options.severities), options.seed
    _check_arguments(names, max_images)
    device = torch.device(device)
    generators = {(n, s): torch.Generator().manual_seed(_generator_seed(seed, n, s)) for n in names for s in severities}
    correct = {key: 0 for key in generators}
    seen, kept = 0, "float"
    count = _image_count(loader, max_images)
    bar = tqdm(
        total=None if count is None else count * len(generators),
        desc="corruptions", unit="img", file=sys.stderr, disable=not progress, leave=False,
    )  # fmt: skip
    was_training = model.training
    model.to(device).eval()
    try:
        for images, targets in batches(loader, device, progress=False):
            if max_images is not None:
                images, targets = images[: max_images - seen], targets[: max_images - seen]
            for (name, severity), generator in generators.items():
                corrupted = CORRUPTIONS[name](images, severity, generator)
                if options.storage:
                    corrupted, kept = stored(corrupted), storage_of(corrupted)
                correct[(name, severity)] += int((model(corrupted).argmax(dim=1) == targets).sum())
                bar.update(len(targets))
            seen += len(targets)
            if max_images is not None and seen >= max_images:
                break
    finally:
        model.train(was_training)
        bar.close()
    if seen == 0:
        raise ValueError("the loader yielded no images")
    return _summary(correct, names, severities, seen, kept)


def _summary(correct: dict, names: list[str], severities: list[int], seen: int, kept: str) -> dict:
    """corruption_accuracy's result from the correct counts per (corruption, severity)."""
    per_severity = {n: [100.0 * correct[(n, s)] / seen for s in severities] for n in names}
    per_corruption = {n: sum(accs) / len(accs) for n, accs in per_severity.items()}
    summary = {
        "mean": sum(per_corruption.values()) / len(per_corruption),
        "per_corruption": per_corruption,
        "per_severity": per_severity,
        "storage": kept,
    }
    if "frost" in names:
        summary["frost_source"] = frost_source()
    return summary
