"""Training augmentations by name, for images held in memory (uint8 tensors) or read from files (PIL).

`aug` is "<base>" or "<base>+<batch mix>": base in BASE_AUGS, batch mix in BATCH_MIXES
("mixup" alone means "baseline+mixup"). The batch mix works on whole batches with mixed labels
and lives in cropmix.train.mixing; here only the per-image part is built. Flip comes after
CropMix, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

BASE_AUGS = ("none", "baseline", "rrc", "cropmix")
BATCH_MIXES = ("mixup", "cutmix")
# torchvision's RandomResizedCrop default: the "baseline" crop of images read from files.
BASELINE_SCALE = (0.08, 1.0)


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


@dataclass(frozen=True)
class AugmentSpec:
    """A run's training augmentation, stated once and handed to whatever runs it: per image or batched in
    DataLoader workers (`for_workers`), batched on the training device (`for_device`), or inside timm's
    factory (`cropmix_kwargs`). Every path crops as `base` says, then flips (`random_flip`); the batch
    mix (Mixup/CutMix of whole batches, the "+mixup" of an aug name) is the training loop's.

    base: one of BASE_AUGS. preset: the CropMix preset whose settings `cropmix_overrides` (scale,
    num_crops, mix, alpha, ...) change. rrc_scale: the "rrc" scale range (default: the preset's).
    """

    base: str = "none"
    size: int = 32
    preset: str = "cifar"
    cropmix_overrides: dict[str, Any] | None = None
    rrc_scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.base not in BASE_AUGS:
            raise ValueError(f"base augmentation must be one of {BASE_AUGS}, got {self.base!r}")

    def cropmix_kwargs(self) -> dict[str, Any]:
        """CropMix's arguments: the preset's at `size`, with the explicit overrides."""
        from cropmix.transforms import preset_kwargs

        kwargs = preset_kwargs(self.preset, self.size)
        kwargs.update({k: v for k, v in (self.cropmix_overrides or {}).items() if v is not None})
        return kwargs

    def per_image(self, in_memory: bool, pad: int = 4) -> Callable:
        """The per-image transform, ending in a uint8 (C, size, size) tensor. baseline: in memory
        (CIFAR-like) a pad-`pad` random crop, from files RandomResizedCrop; rrc: RandomResizedCrop of
        rrc_scale; cropmix: CropMix; each then flipped. none: files resized and centre-cropped."""
        from cropmix.transforms import CropMix

        to_tensor = [] if in_memory else [v2.PILToTensor()]
        size, flip = self.size, v2.RandomHorizontalFlip()
        if self.base == "none":
            steps = [] if in_memory else [v2.Resize(size), v2.CenterCrop(size)]
        elif self.base == "baseline":
            crop = v2.RandomCrop(size, padding=pad) if in_memory else v2.RandomResizedCrop(size, antialias=True)
            steps = [crop, flip]
        elif self.base == "rrc":
            steps = [v2.RandomResizedCrop(size, scale=self.rrc_range(), antialias=True), flip]
        else:  # CropMix takes PIL directly (cheaper than converting first); everything else works on tensors
            return v2.Compose([CropMix(**self.cropmix_kwargs()), *to_tensor, flip])
        return v2.Compose(to_tensor + steps) if to_tensor + steps else v2.Identity()

    def rrc_range(self) -> tuple[float, float]:
        """The scale range of "rrc": rrc_scale, else the preset's range (which CropMix splits into bands)."""
        return tuple(self.rrc_scale) if self.rrc_scale is not None else tuple(self.cropmix_kwargs()["scale"])

    def for_workers(self, in_memory: bool, file_size: tuple[int, int] | None = None) -> tuple[Callable | None, bool]:
        """(the transform DataLoader workers run, whether it takes whole batches).

        CropMix runs batched (`BatchCropMix`) on images in memory and on files small enough for its
        batched passes (`file_size`: height, width, the largest of a few, `largest_file_size`);
        larger files keep the per-image transform. Where each is faster is measured in the
        benchmarks (docs/design.md). In-memory "none" needs no transform (None)."""
        from cropmix.transforms import BATCH_MODES, BatchCropMix, cpu_batch_passes

        kwargs = self.cropmix_kwargs()
        interpolation = kwargs.get("interpolation", v2.InterpolationMode.BILINEAR)
        small_files = file_size is not None and cpu_batch_passes((self.size, self.size), *file_size)
        if self.base == "cropmix" and (in_memory or small_files) and interpolation in BATCH_MODES:
            return _BatchedCropMixFlip(BatchCropMix(**kwargs)), True
        if in_memory and self.base == "none":
            return None, False
        return self.per_image(in_memory), False

    def for_device(self) -> Callable:
        """The batched crop on the training device: a list of (3, Hi, Wi) uint8 images (or a batch) ->
        (B, 3, size, size) uint8; "none" resizes and centre-crops. The flip follows in the pipeline."""
        from .device_pipeline import make_augment

        if self.base == "none":
            return make_augment("center", self.size)
        if self.base == "cropmix":
            overrides = {k: v for k, v in (self.cropmix_overrides or {}).items() if v is not None}
            return make_augment("cropmix", self.size, preset=self.preset, **overrides)
        scale = BASELINE_SCALE if self.base == "baseline" else self.rrc_range()
        return make_augment("rrc", self.size, preset=self.preset, scale=tuple(scale))


EVAL_CROP_FRACTION = 0.875  # test images from files: resized to size / 0.875, then the centre size x size


def eval_transform(size: int, in_memory: bool, crop_fraction: float = EVAL_CROP_FRACTION) -> Callable:
    """Test-time transform: nothing for in-memory images; from files, the short side resized to
    size / crop_fraction and the centre size x size taken (crop_fraction 1: resized to size, no margin)."""
    if in_memory:
        return v2.Identity()
    if not 0 < crop_fraction <= 1:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
    resize = round(size / crop_fraction)
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


class _BatchedCropMixFlip:
    def __init__(self, batch_cropmix: Callable) -> None:
        self.batch_cropmix = batch_cropmix

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return random_flip(self.batch_cropmix(images))
