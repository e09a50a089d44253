"""Accuracy under the corruptions of `corruptions.py`, CIFAR-10-C style, from one pass over the loader."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from .corruptions import CORRUPTIONS
from .predict import batches


def _generator_seed(seed: int, name: str, severity: int) -> int:
    # Stable across runs and independent of which other corruptions are evaluated.
    return (seed * 1_000_003 + zlib.crc32(name.encode()) * 7 + severity) % (2**63)


@torch.no_grad()
def corruption_accuracy(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    seed: int = 0,
    max_images: int | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Top-1 accuracy (percent) of `model` on corrupted copies of the loader's images.

    Returns {"mean": mean over all corruptions and severities, "per_corruption": {name: mean
    over severities}, "per_severity": {name: [accuracy per severity]}}. Each (corruption,
    severity) pair draws from its own generator seeded from `seed`, so results are reproducible
    for a loader with a fixed order. Only the first `max_images` images are used when given.
    """
    names = list(CORRUPTIONS) if corruptions is None else list(corruptions)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        raise ValueError(f"corruptions must be a non-empty subset of {list(CORRUPTIONS)}, got {names!r}")
    severities = list(severities)
    if not severities or any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in severities):
        raise ValueError(f"severities must be a non-empty sequence of ints in 1..5, got {severities!r}")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise ValueError(f"max_images must be None or an int >= 1, got {max_images!r}")
    device = torch.device(device)
    generators = {(n, s): torch.Generator().manual_seed(_generator_seed(seed, n, s)) for n in names for s in severities}
    correct = {key: 0 for key in generators}
    seen = 0
    was_training = model.training
    model.to(device).eval()
    try:
        for images, targets in batches(loader, device, desc="corruptions", progress=progress):
            if max_images is not None:
                images, targets = images[: max_images - seen], targets[: max_images - seen]
            for (name, severity), generator in generators.items():
                corrupted = CORRUPTIONS[name](images, severity, generator)
                correct[(name, severity)] += int((model(corrupted).argmax(dim=1) == targets).sum())
            seen += len(targets)
            if max_images is not None and seen >= max_images:
                break
    finally:
        model.train(was_training)
    if seen == 0:
        raise ValueError("the loader yielded no images")
    per_severity = {n: [100.0 * correct[(n, s)] / seen for s in severities] for n in names}
    per_corruption = {n: sum(accs) / len(accs) for n, accs in per_severity.items()}
    return {
        "mean": sum(per_corruption.values()) / len(per_corruption),
        "per_corruption": per_corruption,
        "per_severity": per_severity,
    }
