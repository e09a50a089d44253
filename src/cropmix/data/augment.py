"""Training augmentations by name, for images held in memory (uint8 tensors) or read from files (PIL).

`aug` is "<base>" or "<base>+<batch mix>": base in BASE_AUGS, batch mix in BATCH_MIXES
("mixup" alone means "baseline+mixup"). The batch mix works on whole batches with mixed labels
and lives in cropmix.train.mixing; here only the per-image part is built. Flip comes after
CropMix, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torchvision.transforms import v2

BASE_AUGS = ("none", "baseline", "rrc", "cropmix")
BATCH_MIXES = ("mixup", "cutmix")


def parse_aug(aug: str) -> tuple[str, str | None]:
    """Split "cropmix+mixup" into ("cropmix", "mixup"); "mixup" alone is ("baseline", "mixup")."""
    if not isinstance(aug, str):
        raise TypeError(f"aug must be a string, got {aug!r}")
    parts = aug.lower().split("+")
    if len(parts) == 1 and parts[0] in BATCH_MIXES:
        parts = ["baseline", parts[0]]
    if len(parts) > 2 or parts[0] not in BASE_AUGS or (len(parts) == 2 and parts[1] not in BATCH_MIXES):
        raise ValueError(
            f"aug must be one of {BASE_AUGS}, optionally followed by '+' and one of {BATCH_MIXES} "
            f"(or {BATCH_MIXES} alone), got {aug!r}"
        )
    return parts[0], (parts[1] if len(parts) == 2 else None)


def cropmix_kwargs(preset_name: str, size: int, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """CropMix arguments: the preset's, at `size`, with explicit `overrides` (scale, num_crops, mix, alpha, ...)."""
    from cropmix.transforms import preset_kwargs

    kwargs = preset_kwargs(preset_name, size)
    kwargs.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return kwargs


def base_transform(
    base: str,
    size: int,
    *,
    in_memory: bool,
    preset_name: str = "cifar",
    cropmix_overrides: dict[str, Any] | None = None,
    rrc_scale: tuple[float, float] | None = None,
    pad: int = 4,
) -> Callable:
    """The per-image training transform for `base`, ending in a uint8 (C, H, W) tensor of side `size`.

    baseline: in memory (CIFAR-like) pad-`pad` random crop + flip; from files RandomResizedCrop + flip.
    rrc: RandomResizedCrop(scale=rrc_scale, default: the preset's scale range, which CropMix splits) + flip.
    cropmix: CropMix with the preset's settings and `cropmix_overrides`, then flip.
    """
    from cropmix.transforms import CropMix

    if base not in BASE_AUGS:
        raise ValueError(f"base augmentation must be one of {BASE_AUGS}, got {base!r}")
    to_tensor = [] if in_memory else [v2.PILToTensor()]
    cm = cropmix_kwargs(preset_name, size, cropmix_overrides)
    if base == "none":
        steps = [] if in_memory else [v2.Resize(size), v2.CenterCrop(size)]
    elif base == "baseline":
        crop = v2.RandomCrop(size, padding=pad) if in_memory else v2.RandomResizedCrop(size, antialias=True)
        steps = [crop, v2.RandomHorizontalFlip()]
    elif base == "rrc":
        scale = tuple(rrc_scale) if rrc_scale is not None else tuple(cm["scale"])
        steps = [v2.RandomResizedCrop(size, scale=scale, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = [CropMix(**cm), v2.RandomHorizontalFlip()]
    # CropMix takes PIL directly (cheaper than converting first); everything else works on tensors.
    if base == "cropmix" and not in_memory:
        return v2.Compose(steps[:1] + to_tensor + steps[1:])
    return v2.Compose(to_tensor + steps) if to_tensor + steps else v2.Identity()


def train_transform(
    base: str,
    size: int,
    *,
    in_memory: bool,
    preset_name: str = "cifar",
    cropmix_overrides: dict[str, Any] | None = None,
    rrc_scale: tuple[float, float] | None = None,
    file_size: tuple[int, int] | None = None,
) -> tuple[Callable | None, bool]:
    """The training transform for `base` and whether it takes whole batches (where augmentation runs).

    CropMix on in-memory images runs batched (`BatchCropMix` in the loader workers), and so does
    CropMix on files small enough for BatchCropMix's batched passes (`file_size`: height, width; the
    largest of a few, `largest_file_size`); larger files keep the per-image transform. Where each
    is faster, and by how much, is measured in the benchmarks (docs/design.md lists the evidence).
    In-memory "none" needs no transform (None).
    """
    from cropmix.transforms import BATCH_MODES, cpu_batch_passes

    kwargs = cropmix_kwargs(preset_name, size, cropmix_overrides)
    interpolation = kwargs.get("interpolation", v2.InterpolationMode.BILINEAR)
    small_files = file_size is not None and cpu_batch_passes((size, size), *file_size)
    if base == "cropmix" and (in_memory or small_files) and interpolation in BATCH_MODES:
        return batch_cropmix(kwargs), True
    if in_memory and base == "none":
        return None, False
    options = dict(preset_name=preset_name, cropmix_overrides=cropmix_overrides, rrc_scale=rrc_scale)
    return base_transform(base, size, in_memory=in_memory, **options), False


EVAL_CROP_FRACTION = 0.875  # test images from files: resized to size / 0.875, then the centre size x size


def eval_transform(size: int, in_memory: bool) -> Callable:
    """Test-time transform: nothing for in-memory images; resize (size / EVAL_CROP_FRACTION) and centre
    crop from files."""
    if in_memory:
        return v2.Identity()
    resize = round(size / EVAL_CROP_FRACTION)
    return v2.Compose([v2.PILToTensor(), v2.Resize(resize, antialias=True), v2.CenterCrop(size)])


def random_flip(
    images: torch.Tensor, generator: torch.Generator | None = None, draws: torch.Tensor | None = None
) -> torch.Tensor:
    """Each image of a (B, ...) batch flipped left-right with probability 1/2: the flip that follows the
    crop in every training augmentation (after CropMix, as in the paper). `draws`: the B uniforms to
    use, when the caller drew them with others; else drawn here (from `generator`, on the batch's device)."""
    if draws is None:
        draws = torch.rand(len(images), generator=generator, device=images.device)
    flip = (draws.reshape(-1) < 0.5).view(-1, *[1] * (images.ndim - 1))
    return torch.where(flip, images.flip(-1), images)


class PerImage:
    """Apply a per-image transform to every image of a uint8 (B, C, H, W) batch (picklable, for workers)."""

    def __init__(self, transform: Callable) -> None:
        self.transform = transform

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.transform(image) for image in images])


def batch_cropmix(kwargs: dict[str, Any]) -> Callable:
    """A batched CropMix (`BatchCropMix`) followed by a batched horizontal flip."""
    from cropmix.transforms import BatchCropMix

    return _BatchedCropMixFlip(BatchCropMix(**kwargs))


class _BatchedCropMixFlip:
    def __init__(self, batch_cropmix: Callable) -> None:
        self.batch_cropmix = batch_cropmix

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return random_flip(self.batch_cropmix(images))
