"""The paper's CropMix settings by name (SPEC.md, "Paper settings")."""

from __future__ import annotations

from typing import Any

from torchvision.transforms.v2 import InterpolationMode

from .cropmix import CropMix

PRESETS: dict[str, dict[str, Any]] = {
    # CIFAR-10/100 classification: scale [0.5, 1], N = 2, Mixup, alpha 0.4, channel permutation.
    "cifar": dict(size=32, scale=(0.5, 1.0), num_crops=2, mix="mixup", alpha=0.4, channel_permute=True),
    # ImageNet classification: scale [0.01, 1], N drawn from {2, 3, 4} per image.
    "imagenet": dict(size=224, scale=(0.01, 1.0), num_crops=(2, 3, 4), mix="mixup", alpha=0.4, channel_permute=True),
    # MAE pre-training inputs, bicubic, no channel permutation.
    "mae-mixup": dict(
        size=224,
        scale=(0.2, 1.0),
        num_crops=(2, 3, 4),
        mix="mixup",
        alpha=0.4,
        channel_permute=False,
        interpolation=InterpolationMode.BICUBIC,
    ),
    "mae-cutmix": dict(
        size=224,
        scale=(0.2, 1.0),
        num_crops=2,
        mix="cutmix",
        channel_permute=False,
        interpolation=InterpolationMode.BICUBIC,
    ),
}


def preset_kwargs(name: str, size: int | tuple[int, int] | None = None) -> dict[str, Any]:
    """The keyword arguments of preset `name`, with `size` overriding its output size."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    kwargs = dict(PRESETS[name])
    if size is not None:
        kwargs["size"] = size
    return kwargs


def preset(name: str, size: int | tuple[int, int] | None = None, **overrides: Any) -> CropMix:
    """A `CropMix` with the paper's settings for `name` ("cifar", "imagenet", "mae-mixup", "mae-cutmix").

    `size` overrides the preset's output size; other keyword arguments (p,
    generator, ...) are passed to `CropMix`.
    """
    return CropMix(**preset_kwargs(name, size), **overrides)
