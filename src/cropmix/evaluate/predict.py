"""Running a model over a loader: logits and targets, with images converted to floats in [0, 1]."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn
from tqdm import tqdm


def to_unit_float(images: Tensor, device: torch.device | str) -> Tensor:
    """Move images to `device` and return them as float32 in [0, 1] (uint8 is divided by 255 there)."""
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a Tensor (B, C, H, W), got {type(images).__name__}")
    images = images.to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        return images.float().div_(255)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point in [0, 1], got dtype {images.dtype}")
    return images.float()


def batches(
    loader: Iterable, device: torch.device | str, *, desc: str | None = None, progress: bool = True
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (images float [0, 1] on device, targets on device) from a loader of (images, targets, ...)."""
    total = len(loader) if hasattr(loader, "__len__") else None
    for batch in tqdm(loader, desc=desc, total=total, file=sys.stderr, disable=not progress, leave=False):
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TypeError(f"the loader must yield (images, targets) pairs, got {type(batch).__name__}")
        yield to_unit_float(batch[0], device), batch[1].to(device, non_blocking=True)


@torch.no_grad()
def predict(
    model: nn.Module, loader: Iterable, device: torch.device | str, amp: bool = False, *, progress: bool = True
) -> tuple[Tensor, Tensor]:
    """Logits (N, K) float32 on CPU and targets (N,) of `model` (moved to `device`, in eval mode) over `loader`.

    amp: autocast (float16 on CUDA, bfloat16 on CPU). The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    all_logits: list[Tensor] = []
    all_targets: list[Tensor] = []
    try:
        for images, targets in batches(loader, device, desc="predict", progress=progress):
            with torch.autocast(device.type, enabled=amp):
                logits = model(images)
            all_logits.append(logits.float().cpu())
            all_targets.append(targets.cpu())
    finally:
        model.train(was_training)
    if not all_logits:
        raise ValueError("the loader yielded no batches")
    return torch.cat(all_logits), torch.cat(all_targets)
