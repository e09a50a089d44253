"""Dataset statistics and the in-model normalisation every cropmix model starts with.

Models take images in [0, 1] and normalise inside, so attacks (FGSM) and corruptions
can work in pixel space without knowing the dataset's statistics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """(x - mean) / std per channel, for float images in [0, 1] of shape (B, C, H, W).

    A single value of mean/std is broadcast to every channel; otherwise their length
    must equal `in_channels`.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], in_channels: int = 3) -> None:
        super().__init__()
        mean_t = _per_channel("mean", mean, in_channels)
        std_t = _per_channel("std", std, in_channels)
        if bool((std_t <= 0).any()):
            raise ValueError(f"std must be > 0 for every channel, got {tuple(std)!r}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def _per_channel(name: str, values: Sequence[float], in_channels: int) -> Tensor:
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 1:
        return t.expand(in_channels).clone()
    if t.numel() != in_channels:
        raise ValueError(f"{name} must have 1 or in_channels={in_channels} values, got {len(t)}: {tuple(values)!r}")
    return t
