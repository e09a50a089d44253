"""timm's training transform with CropMix in place of its random-resized crop (extra: cropmix[timm]).

`create_transform(input_size, cropmix="imagenet", **timm_kwargs)` calls `timm.data.create_transform` and
swaps its RandomResizedCropAndInterpolation step for CropMix; every other step (flip, RandAugment,
colour jitter, ToTensor + Normalize or the prefetcher's uint8 output, random erasing) stays as timm
builds it. CropMix returns a PIL image for a PIL input, so timm's PIL augmentations follow unchanged.
"""

from __future__ import annotations

from typing import Any

from torchvision.transforms.v2 import InterpolationMode

from cropmix.transforms import CropMix, preset

from . import require

# timm's interpolation names that CropMix renders; "random" (bilinear or bicubic per image) keeps the preset's.
INTERPOLATIONS = {
    "nearest": InterpolationMode.NEAREST,
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
}


def create_transform(
    input_size: int | tuple[int, int] | tuple[int, int, int],
    is_training: bool = True,
    cropmix: str | CropMix = "imagenet",
    **timm_kwargs: Any,
) -> Any:
    """What `timm.data.create_transform(input_size, is_training, **timm_kwargs)` returns, with CropMix as its crop.

    cropmix: a preset name (built at timm's crop size; timm's `interpolation`, `scale` and `ratio`, when
    given, replace the preset's) or a CropMix instance, used as it is (its size must be timm's crop size).
    With `separate=True` the first (primary) of timm's three transforms holds CropMix. With
    `is_training=False` timm's evaluation transform is returned unchanged (it has no random crop).
    """
    require("timm", "timm", "cropmix.integrations.timm")
    import timm.data
    from timm.data.transforms import RandomResizedCropAndInterpolation

    built = timm.data.create_transform(input_size, is_training=is_training, **timm_kwargs)
    if not is_training:
        return built
    primary = built[0] if isinstance(built, tuple) else built
    steps = getattr(primary, "transforms", [])
    found = [i for i, step in enumerate(steps) if isinstance(step, RandomResizedCropAndInterpolation)]
    if len(found) != 1:
        raise ValueError(
            f"timm built no single RandomResizedCropAndInterpolation step to replace with these arguments "
            f"{timm_kwargs!r} (CropMix replaces timm's default train_crop_mode 'rrc'; no_aug, naflex and "
            f"tf_preprocessing have none); got steps {[type(s).__name__ for s in steps]}"
        )
    crop = steps[found[0]]
    steps[found[0]] = cropmix_step(cropmix, tuple(crop.size), timm_kwargs)
    return built


def cropmix_step(cropmix: str | CropMix, size: tuple[int, int], timm_kwargs: dict[str, Any]) -> CropMix:
    """The CropMix that stands in timm's crop of `size` (height, width); see `create_transform`."""
    if isinstance(cropmix, CropMix):
        if tuple(cropmix.size) != tuple(size):
            raise ValueError(
                f"cropmix (a CropMix of size {tuple(cropmix.size)}) must output timm's crop size {tuple(size)}"
            )
        return cropmix
    if not isinstance(cropmix, str):
        raise TypeError(f"cropmix must be a preset name or a CropMix instance, got {cropmix!r}")
    overrides: dict[str, Any] = {}
    interpolation = timm_kwargs.get("interpolation")
    if interpolation is not None and interpolation != "random":
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation {interpolation!r} has no CropMix counterpart; accepted: "
                f"{sorted(INTERPOLATIONS)} or 'random' (keeps the preset's)"
            )
        overrides["interpolation"] = INTERPOLATIONS[interpolation]
    for name in ("scale", "ratio"):
        if timm_kwargs.get(name) is not None:
            overrides[name] = tuple(timm_kwargs[name])
    return preset(cropmix, size, **overrides)


# Arguments that cropmix train sets itself: uint8 output (the model normalises inside), one transform.
TRAIN_FIXED = ("input_size", "is_training", "use_prefetcher", "separate", "normalize", "mean", "std", "re_prob")


def train_transform(
    size: int,
    in_memory: bool,
    preset_name: str = "cifar",
    cropmix_overrides: dict[str, Any] | None = None,
    **timm_kwargs: Any,
) -> Any:
    """For `cropmix train --timm-aug`: timm's training transform around CropMix (`preset_name` at `size` with the
    non-None `cropmix_overrides`), ending in a uint8 (C, H, W) tensor as the loop expects (timm's prefetcher
    form, no normalisation: the model normalises inside). In-memory uint8 images become PIL images first,
    for timm's PIL augmentations."""
    fixed = sorted(set(timm_kwargs) & set(TRAIN_FIXED))
    if fixed:
        raise ValueError(
            f"timm_aug (--timm-aug) must not set {fixed}: cropmix train fixes {list(TRAIN_FIXED)} "
            "(uint8 output normalised by the model; random erasing would need timm's prefetcher)"
        )
    overrides = {k: v for k, v in (cropmix_overrides or {}).items() if v is not None}
    transform = create_transform(
        size, cropmix=preset(preset_name, size, **overrides), use_prefetcher=True, **timm_kwargs
    )
    if not in_memory:
        return transform
    from torchvision.transforms import v2

    return v2.Compose([v2.ToPILImage(), transform])
