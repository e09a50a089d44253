"""cropmix.integrations: timm's transform factory with CropMix, TensorBoard logs, Hugging Face datasets."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from cropmix import CropMix

timm = pytest.importorskip("timm")


def _image(height: int = 48, width: int = 64, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _composes(built):
    return list(built) if isinstance(built, tuple) else [built]


TIMM_ARGS = [
    {},
    {"auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25},
    {"interpolation": "bicubic"},
    {"use_prefetcher": True},
    {"separate": True},
    {"separate": True, "auto_augment": "rand-m9-mstd0.5", "use_prefetcher": True},
]


@pytest.mark.parametrize("kwargs", TIMM_ARGS)
def test_timm_factory_replaces_only_the_crop(kwargs):
    from timm.data.transforms import RandomResizedCropAndInterpolation

    from cropmix.integrations.timm import create_transform

    ours = _composes(create_transform(32, cropmix="imagenet", **kwargs))
    theirs = _composes(timm.data.create_transform(32, is_training=True, **kwargs))
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        types_a = [type(t) for t in a.transforms]
        types_b = [type(t) for t in b.transforms]
        if i == 0:  # the primary transform: the crop first, the rest as timm builds it
            assert types_b[0] is RandomResizedCropAndInterpolation
            assert types_a[0] is CropMix and a.transforms[0].size == (32, 32)
            types_a, types_b = types_a[1:], types_b[1:]
        assert types_a == types_b
    torch.manual_seed(0)
    out_a, out_b = _image(), _image()
    for a, b in zip(ours, theirs, strict=True):
        out_a, out_b = a(out_a), b(out_b)
        assert type(out_a) is type(out_b)
        if isinstance(out_a, torch.Tensor):
            assert out_a.shape == out_b.shape == (3, 32, 32) and out_a.dtype == out_b.dtype
    expected = torch.uint8 if kwargs.get("use_prefetcher") else torch.float32
    assert out_a.dtype == expected


def test_timm_factory_interpolation_scale_and_instances():
    from torchvision.transforms.v2 import InterpolationMode

    from cropmix.integrations.timm import create_transform

    step = create_transform((3, 24, 40), interpolation="bicubic", scale=(0.2, 1.0)).transforms[0]
    assert step.size == (24, 40) and step.interpolation == InterpolationMode.BICUBIC and step.scale == (0.2, 1.0)
    assert create_transform(24, interpolation="random").transforms[0].interpolation == InterpolationMode.BILINEAR
    mine = CropMix(24, num_crops=2, interpolation=InterpolationMode.NEAREST)
    assert create_transform(24, cropmix=mine, interpolation="bicubic").transforms[0] is mine
    with pytest.raises(ValueError, match="crop size"):
        create_transform(32, cropmix=mine)
    with pytest.raises(ValueError, match="lanczos"):
        create_transform(32, interpolation="lanczos")
    with pytest.raises(ValueError, match="RandomResizedCropAndInterpolation"):
        create_transform(32, no_aug=True)
    with pytest.raises(TypeError, match="cropmix"):
        create_transform(32, cropmix=3)
    evaluation = create_transform(32, is_training=False)
    assert not any(isinstance(t, CropMix) for t in evaluation.transforms)
